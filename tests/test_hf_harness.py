"""Proves that tests/hf_testers.py really runs transformers' common testers against an out-of-tree model.

A tiny ViT-like model written in the transformers v5 style (dataclass config, `_init_weights` via
`transformers.initialization`, attention interface, `capture_outputs`, BackboneMixin, PIL image processor) is
registered under the test-only model type "hf_harness_vit" and must pass ModelTesterMixin, BackboneTesterMixin,
ConfigTester and ImageProcessingTestMixin. A copy whose `_init_weights` forgets a custom parameter must FAIL
`test_can_init_all_missing_weights`, so a green run means the testers executed, not that they were skipped.
The cache-building machinery (lock, atomic rename, stamp, PyPI error) is tested on a fake sdist, offline.
"""

import json
import os
import subprocess
import sys
import tarfile
import textwrap
import unittest
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import pytest
import torch
from huggingface_hub.dataclasses import strict
from torch import nn
from transformers import (
    AutoBackbone,
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForImageClassification,
    PreTrainedConfig,
    PreTrainedModel,
)
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.backbone_utils import BackboneConfigMixin, BackboneMixin, filter_output_hidden_states
from transformers.image_processing_backends import PilBackend
from transformers.image_utils import IMAGENET_STANDARD_MEAN, IMAGENET_STANDARD_STD, PILImageResampling
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import (
    BackboneOutput,
    BaseModelOutput,
    BaseModelOutputWithPooling,
    ImageClassifierOutput,
)
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.processing_utils import Unpack
from transformers.utils import TransformersKwargs
from transformers.utils.generic import can_return_tuple, merge_with_config_defaults
from transformers.utils.output_capturing import capture_outputs

from tests import hf_testers
from tests.hf_testers import (
    BackboneTesterMixin,
    ConfigTester,
    ImageProcessingTestMixin,
    ModelTesterMixin,
    PilImageProcessingTester,
    PilOnlyImageProcessingOverrides,
    VisionModelTestOverrides,
    expose_model_names_to_testers,
    floats_tensor,
    ids_tensor,
    run_test_methods,
)

MODEL_TYPE = "hf_harness_vit"


# ------------------------------------------------------------------------------------------------------------------
# The tiny model under test
# ------------------------------------------------------------------------------------------------------------------


@strict
class HarnessViTConfig(BackboneConfigMixin, PreTrainedConfig):
    """Tiny ViT: [CLS] + patch tokens, pre-norm blocks with layer scale; stages = stem + one per block."""

    model_type = MODEL_TYPE

    image_size: int = 32
    patch_size: int = 8
    num_channels: int = 3
    hidden_size: int = 32
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    intermediate_size: int = 64
    hidden_act: str = "gelu"
    layer_norm_eps: float = 1e-6
    layer_scale_init_value: float = 0.1
    initializer_range: float = 0.02
    _out_features: list[str] | None = None
    _out_indices: list[int] | None = None

    def __post_init__(self, **kwargs):
        self.stage_names = ["stem"] + [f"stage{index}" for index in range(1, self.num_hidden_layers + 1)]
        self.set_output_features_output_indices(
            out_indices=kwargs.pop("out_indices", None), out_features=kwargs.pop("out_features", None)
        )
        super().__post_init__(**kwargs)


class HarnessViTEmbeddings(nn.Module):
    def __init__(self, config: HarnessViTConfig):
        super().__init__()
        self.patch_size = config.patch_size
        self.patch_embeddings = nn.Conv2d(
            config.num_channels, config.hidden_size, kernel_size=config.patch_size, stride=config.patch_size
        )
        num_patches = (config.image_size // config.patch_size) ** 2
        # Random (not zero) at construction: a forgotten `_init_weights` entry then differs from a meta-device load.
        self.cls_token = nn.Parameter(torch.randn(1, 1, config.hidden_size))
        self.position_embeddings = nn.Parameter(torch.randn(1, num_patches + 1, config.hidden_size))

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, 1 + H/p * W/p, D)."""
        patches = self.patch_embeddings(pixel_values).flatten(2).transpose(1, 2)
        cls_tokens = self.cls_token.expand(patches.shape[0], -1, -1)
        return torch.cat([cls_tokens, patches], dim=1) + self.position_embeddings


def eager_attention_forward(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    """query/key/value (B, heads, N, d) -> output (B, N, heads, d), weights (B, heads, N, N)."""
    weights = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        weights = weights + attention_mask
    weights = nn.functional.softmax(weights, dim=-1)
    weights = nn.functional.dropout(weights, p=dropout, training=module.training)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), weights


class HarnessViTAttention(nn.Module):
    def __init__(self, config: HarnessViTConfig):
        super().__init__()
        self.config = config
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.scaling = self.head_dim**-0.5
        self.is_causal = False
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size)
        self.proj = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden_states: torch.Tensor, **kwargs: Unpack[TransformersKwargs]):
        batch_size, num_tokens, _ = hidden_states.shape
        qkv = self.qkv(hidden_states).view(batch_size, num_tokens, 3, -1, self.head_dim).permute(2, 0, 3, 1, 4)
        attention_interface: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
        output, weights = attention_interface(self, qkv[0], qkv[1], qkv[2], None, scaling=self.scaling, **kwargs)
        return self.proj(output.reshape(batch_size, num_tokens, -1)), weights


class HarnessViTLayer(GradientCheckpointingLayer):
    def __init__(self, config: HarnessViTConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attention = HarnessViTAttention(config)
        self.norm2 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.fc1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.act = ACT2FN[config.hidden_act]
        self.fc2 = nn.Linear(config.intermediate_size, config.hidden_size)
        self.lambda1 = nn.Parameter(torch.randn(config.hidden_size))
        self.lambda2 = nn.Parameter(torch.randn(config.hidden_size))

    def forward(self, hidden_states: torch.Tensor, **kwargs: Unpack[TransformersKwargs]) -> torch.Tensor:
        attended, _ = self.attention(self.norm1(hidden_states), **kwargs)
        hidden_states = hidden_states + self.lambda1 * attended
        return hidden_states + self.lambda2 * self.fc2(self.act(self.fc1(self.norm2(hidden_states))))


class HarnessViTPreTrainedModel(PreTrainedModel):
    config: HarnessViTConfig
    base_model_prefix = "harness_vit"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = True
    _no_split_modules: ClassVar[list[str]] = ["HarnessViTEmbeddings", "HarnessViTLayer"]
    _supports_sdpa = True
    _supports_attention_backend = True
    _can_record_outputs: ClassVar[dict] = {"hidden_states": HarnessViTLayer, "attentions": HarnessViTAttention}
    _input_embed_layer = "patch_embeddings"

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, HarnessViTEmbeddings):
            init.trunc_normal_(module.cls_token, std=self.config.initializer_range)
            init.trunc_normal_(module.position_embeddings, std=self.config.initializer_range)
        elif isinstance(module, HarnessViTLayer):
            init.constant_(module.lambda1, self.config.layer_scale_init_value)
            init.constant_(module.lambda2, self.config.layer_scale_init_value)


class HarnessViTEncoder(HarnessViTPreTrainedModel):
    def __init__(self, config: HarnessViTConfig):
        super().__init__(config)
        self.layer = nn.ModuleList([HarnessViTLayer(config) for _ in range(config.num_hidden_layers)])
        self.post_init()

    @merge_with_config_defaults
    @capture_outputs(tie_last_hidden_states=False)
    def forward(self, hidden_states: torch.Tensor, **kwargs: Unpack[TransformersKwargs]) -> BaseModelOutput:
        for layer in self.layer:
            hidden_states = layer(hidden_states, **kwargs)
        return BaseModelOutput(last_hidden_state=hidden_states)


class HarnessViTModel(HarnessViTPreTrainedModel):
    def __init__(self, config: HarnessViTConfig):
        super().__init__(config)
        self.embeddings = HarnessViTEmbeddings(config)
        self.encoder = HarnessViTEncoder(config)
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.post_init()

    @can_return_tuple
    def forward(self, pixel_values: torch.Tensor, **kwargs: Unpack[TransformersKwargs]) -> BaseModelOutputWithPooling:
        encoded = self.encoder(self.embeddings(pixel_values), **kwargs)
        sequence_output = self.layernorm(encoded.last_hidden_state)
        return BaseModelOutputWithPooling(
            last_hidden_state=sequence_output,
            pooler_output=sequence_output[:, 0],
            hidden_states=encoded.hidden_states,
            attentions=encoded.attentions,
        )


class HarnessViTBackbone(BackboneMixin, HarnessViTPreTrainedModel):
    def __init__(self, config: HarnessViTConfig):
        super().__init__(config)
        self.num_features = [config.hidden_size] * (config.num_hidden_layers + 1)
        self.embeddings = HarnessViTEmbeddings(config)
        self.encoder = HarnessViTEncoder(config)
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.post_init()

    @can_return_tuple
    @filter_output_hidden_states
    def forward(self, pixel_values: torch.Tensor, **kwargs: Unpack[TransformersKwargs]) -> BackboneOutput:
        """Feature maps (B, D, H/p, W/p) for each stage in `out_features`."""
        encoded = self.encoder(self.embeddings(pixel_values), **kwargs)
        grid_h, grid_w = (
            pixel_values.shape[2] // self.config.patch_size,
            pixel_values.shape[3] // self.config.patch_size,
        )
        feature_maps = tuple(
            self.layernorm(hidden)[:, 1:].transpose(1, 2).reshape(hidden.shape[0], -1, grid_h, grid_w)
            for stage, hidden in zip(self.stage_names, encoded.hidden_states)
            if stage in self.out_features
        )
        return BackboneOutput(
            feature_maps=feature_maps, hidden_states=encoded.hidden_states, attentions=encoded.attentions
        )


class HarnessViTForImageClassification(HarnessViTPreTrainedModel):
    def __init__(self, config: HarnessViTConfig):
        super().__init__(config)
        self.harness_vit = HarnessViTModel(config)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    @can_return_tuple
    def forward(
        self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None, **kwargs: Unpack[TransformersKwargs]
    ) -> ImageClassifierOutput:
        outputs = self.harness_vit(pixel_values, **kwargs)
        logits = self.classifier(outputs.pooler_output)
        loss = self.loss_function(labels, logits, self.config, **kwargs) if labels is not None else None
        return ImageClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


class HarnessViTImageProcessor(PilBackend):
    resample = PILImageResampling.BILINEAR
    image_mean = IMAGENET_STANDARD_MEAN
    image_std = IMAGENET_STANDARD_STD
    size: ClassVar[dict[str, int]] = {"height": 32, "width": 32}
    do_resize = True
    do_rescale = True
    do_normalize = True


class ForgetfulInitViTModel(HarnessViTModel):
    """Deliberately broken: `_init_weights` forgets the position embeddings.

    (The blocks live in `HarnessViTEncoder`, itself a PreTrainedModel whose own `_init_weights` initialises them, so
    a bug must sit in a module the model owns directly to show up here.)
    """

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, HarnessViTEmbeddings):
            init.trunc_normal_(module.cls_token, std=self.config.initializer_range)  # position_embeddings forgotten
            return
        super()._init_weights(module)


AutoConfig.register(MODEL_TYPE, HarnessViTConfig, exist_ok=True)
AutoModel.register(HarnessViTConfig, HarnessViTModel, exist_ok=True)
AutoBackbone.register(HarnessViTConfig, HarnessViTBackbone, exist_ok=True)
AutoModelForImageClassification.register(HarnessViTConfig, HarnessViTForImageClassification, exist_ok=True)
AutoImageProcessor.register(HarnessViTConfig, image_processor_classes={"pil": HarnessViTImageProcessor}, exist_ok=True)
expose_model_names_to_testers(
    MODEL_TYPE,
    model=HarnessViTModel,
    backbone=HarnessViTBackbone,
    image_classification=HarnessViTForImageClassification,
)


# ------------------------------------------------------------------------------------------------------------------
# The common testers
# ------------------------------------------------------------------------------------------------------------------


class HarnessViTModelTester:
    def __init__(
        self,
        parent,
        batch_size=2,
        image_size=16,
        patch_size=4,
        num_channels=3,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        num_labels=3,
        is_training=True,
    ):
        self.parent = parent
        self.batch_size = batch_size
        self.image_size = image_size
        self.patch_size = patch_size
        self.num_channels = num_channels
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.num_labels = num_labels
        self.is_training = is_training
        self.seq_length = (image_size // patch_size) ** 2 + 1

    def get_config(self) -> HarnessViTConfig:
        return HarnessViTConfig(
            image_size=self.image_size,
            patch_size=self.patch_size,
            num_channels=self.num_channels,
            hidden_size=self.hidden_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            intermediate_size=self.intermediate_size,
            num_labels=self.num_labels,
            out_indices=[1, 2],
        )

    def prepare_config_and_inputs_for_common(self):
        pixel_values = floats_tensor([self.batch_size, self.num_channels, self.image_size, self.image_size])
        return self.get_config(), {"pixel_values": pixel_values}


class HarnessViTModelTest(VisionModelTestOverrides, ModelTesterMixin, unittest.TestCase):
    all_model_classes = (HarnessViTModel, HarnessViTBackbone, HarnessViTForImageClassification)

    def setUp(self):
        self.model_tester = HarnessViTModelTester(self)
        self.config_tester = ConfigTester(self, config_class=HarnessViTConfig, has_text_modality=False, hidden_size=37)

    def test_config(self):
        self.config_tester.run_common_tests()

    def test_image_classification_loss_uses_labels(self):
        config, inputs = self.model_tester.prepare_config_and_inputs_for_common()
        model = HarnessViTForImageClassification(config).eval()
        labels = ids_tensor([self.model_tester.batch_size], self.model_tester.num_labels)
        output = model(**inputs, labels=labels)
        expected = nn.functional.cross_entropy(output.logits, labels)
        torch.testing.assert_close(output.loss, expected)


class HarnessViTBackboneTest(BackboneTesterMixin, unittest.TestCase):
    all_model_classes = (HarnessViTBackbone,)
    config_class = HarnessViTConfig

    def setUp(self):
        self.model_tester = HarnessViTModelTester(self)


class HarnessViTImageProcessingTester(PilImageProcessingTester):
    image_processing_classes_by_backend: ClassVar[dict[str, type]] = {"pil": HarnessViTImageProcessor}

    def __init__(self, parent, **kwargs):
        kwargs.setdefault("size", {"height": 18, "width": 18})
        kwargs.setdefault("do_resize", True)
        kwargs.setdefault("do_normalize", True)
        kwargs.setdefault("image_mean", [0.5, 0.5, 0.5])
        kwargs.setdefault("image_std", [0.5, 0.5, 0.5])
        super().__init__(parent, batch_size=3, min_resolution=20, max_resolution=40, **kwargs)


class HarnessViTImageProcessingTest(PilOnlyImageProcessingOverrides, ImageProcessingTestMixin, unittest.TestCase):
    image_processor_tester_class = HarnessViTImageProcessingTester


# ------------------------------------------------------------------------------------------------------------------
# The testers catch a real bug
# ------------------------------------------------------------------------------------------------------------------


def test_broken_init_weights_fails_can_init_all_missing_weights():
    class ForgetfulInitTest(VisionModelTestOverrides, ModelTesterMixin, unittest.TestCase):
        all_model_classes = (ForgetfulInitViTModel,)

        def setUp(self):
            self.model_tester = HarnessViTModelTester(self)

    class CorrectInitTest(ForgetfulInitTest):
        all_model_classes = (HarnessViTModel,)

    broken = run_test_methods(ForgetfulInitTest, "test_can_init_all_missing_weights")
    assert not broken.skipped and not broken.errors, (broken.skipped, broken.errors)
    assert len(broken.failures) == 1
    message = broken.failures[0][1]
    assert "not properly handled in `_init_weights()`" in message
    assert "`position_embeddings` in module `HarnessViTEmbeddings`" in message
    assert "cls_token" not in message

    correct = run_test_methods(CorrectInitTest, "test_can_init_all_missing_weights")
    assert correct.wasSuccessful() and correct.testsRun == 1 and not correct.skipped


def test_can_init_all_missing_weights_is_skipped_without_the_2023_flag():
    """Why VisionModelTestOverrides sets `test_can_init_all_missing_weights_before_2023`: our files carry no
    `# Copyright 2023+` header, so without the flag the key init test would silently skip."""

    class WithoutFlag(ModelTesterMixin, unittest.TestCase):
        all_model_classes = (ForgetfulInitViTModel,)

        def setUp(self):
            self.model_tester = HarnessViTModelTester(self)

    result = run_test_methods(WithoutFlag, "test_can_init_all_missing_weights")
    assert len(result.skipped) == 1 and not result.failures


def test_exposing_names_never_touches_in_tree_entries_or_auto_resolution():
    from transformers import ViTConfig
    from transformers.models.auto import modeling_auto

    expose_model_names_to_testers("vit", model="ClashingViTModel", image_classification="ClashingViTClassifier")
    try:
        assert modeling_auto.MODEL_MAPPING_NAMES["vit"] == "ViTModel"
        assert "ClashingViTModel" in modeling_auto.MODEL_MAPPING_NAMES.values()
        config = ViTConfig(
            hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8, image_size=8
        )
        assert type(AutoModel.from_config(config)).__name__ == "ViTModel"
        assert type(AutoModel.from_config(HarnessViTConfig())) is HarnessViTModel
    finally:
        for kind in ("model", "image_classification"):
            getattr(modeling_auto, hf_testers.MAPPING_NAMES_BY_KIND[kind]).pop("vit [out-of-tree test]")


def test_exposed_names_make_training_tests_use_labels():
    tester = HarnessViTModelTest("test_training")
    tester.setUp()
    _, inputs = tester.model_tester.prepare_config_and_inputs_for_common()
    classification_inputs = tester._prepare_for_class(inputs, HarnessViTForImageClassification, return_labels=True)
    assert classification_inputs["labels"].shape == (tester.model_tester.batch_size,)
    assert "labels" not in tester._prepare_for_class(inputs, HarnessViTModel, return_labels=True)


def test_noise_and_fixed_inputs_hooks_are_deterministic():
    class NoisyModel(HarnessViTModel):
        def forward(self, pixel_values, noise=None, teacher_features=None, **kwargs):
            return super().forward(pixel_values, **kwargs)

    class Tester(HarnessViTModelTester):
        noise_length = 16

        def fixed_model_inputs(self, model_class, batch_size):
            return {"teacher_features": torch.full((batch_size, 16, 8), float(batch_size))}

    class NoisyTest(VisionModelTestOverrides, ModelTesterMixin, unittest.TestCase):
        all_model_classes = (NoisyModel,)

        def setUp(self):
            self.model_tester = Tester(self)

    case = NoisyTest("test_training")
    case.setUp()
    _, inputs = case.model_tester.prepare_config_and_inputs_for_common()
    first = case._prepare_for_class(inputs, NoisyModel)
    second = case._prepare_for_class(inputs, NoisyModel)
    assert first["noise"].shape == (2, 16)
    assert torch.equal(first["noise"], second["noise"])
    assert torch.equal(first["teacher_features"], torch.full((2, 16, 8), 2.0))
    assert "noise" not in case._prepare_for_class(inputs, HarnessViTModel)  # its forward takes no `noise`


# ------------------------------------------------------------------------------------------------------------------
# The cache folder: layout, atomic/locked build, PyPI error
# ------------------------------------------------------------------------------------------------------------------


def test_activated_cache_layout_and_sys_path():
    folder = hf_testers.activate_hf_testers()
    import transformers

    assert folder == hf_testers.testers_dir() and folder.name == transformers.__version__
    assert str(folder) in sys.path
    assert (folder / "hf_tests" / "test_modeling_common.py").is_file()
    for shim in hf_testers._SHIMS:
        assert (folder / shim).read_text() == hf_testers._SHIMS[shim]
    assert hf_testers._is_complete(folder, transformers.__version__)
    assert {p.name for p in (folder / "fixtures").iterdir()} >= {"000000039769.jpg", "ADE_val_00000001.png"}


def _fake_sdist(tmp_path: Path, version: str) -> Path:
    root = tmp_path / "src" / f"transformers-{version}" / "tests"
    (root / "models").mkdir(parents=True)
    (root / "test_modeling_common.py").write_text("class ModelTesterMixin:\n    pass\n")
    (root / "models" / "notes.txt").write_text("nested files come along")
    (root.parent / "setup.py").write_text("# not extracted\n")
    sdist = tmp_path / f"transformers-{version}.tar.gz"
    with tarfile.open(sdist, "w:gz") as archive:
        archive.add(root.parent, arcname=f"transformers-{version}")
    return sdist


def test_concurrent_builds_are_locked_and_atomic(tmp_path):
    version = "0.0.1.harnesstest"
    sdist = _fake_sdist(tmp_path, version)
    cache_root = tmp_path / "cache"
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(hf_testers.REPO_ROOT)!r})
        from pathlib import Path
        from tests.hf_testers import ensure_hf_testers
        folder = ensure_hf_testers({version!r}, cache_root=Path({str(cache_root)!r}))
        print((folder / "hf_tests" / "test_modeling_common.py").read_text().splitlines()[0])
        """
    )
    env = {**os.environ, hf_testers.SDIST_ENV: str(sdist)}
    env.pop(hf_testers._FAILURE_ENV, None)
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    outputs = [worker.communicate(timeout=300) for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0, 0], outputs
    assert all(out.strip() == "class ModelTesterMixin:" for out, _ in outputs)

    folder = cache_root / version
    assert sorted(p.name for p in cache_root.iterdir()) == [version, f"{version}.lock"]  # no staging leftovers
    assert (folder / "hf_tests" / "models" / "notes.txt").is_file()
    assert not (folder / "setup.py").exists() and not (folder / "hf_tests" / "setup.py").exists()
    assert hf_testers._is_complete(folder, version)

    # A stale build (older shims) is replaced in place; a current one is left untouched.
    (folder / hf_testers._STAMP_NAME).write_text(json.dumps({"transformers": version, "shims_sha256": "old"}))
    (folder / "hf_tests" / "leftover.py").write_text("")
    os.environ[hf_testers.SDIST_ENV] = str(sdist)
    try:
        assert hf_testers.ensure_hf_testers(version, cache_root=cache_root) == folder
    finally:
        del os.environ[hf_testers.SDIST_ENV]
    assert hf_testers._is_complete(folder, version) and not (folder / "hf_tests" / "leftover.py").exists()
    marker = folder / "hf_tests" / "marker.py"
    marker.write_text("")
    hf_testers.ensure_hf_testers(version, cache_root=cache_root)  # complete: no rebuild, no download attempt
    assert marker.exists()


def test_unreachable_pypi_gives_actionable_error(tmp_path, monkeypatch):
    monkeypatch.delenv(hf_testers.SDIST_ENV, raising=False)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)  # ignore machine-wide mirrors / find-links
    monkeypatch.setenv("PIP_FIND_LINKS", "")
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", "")
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_RETRIES", "0")
    with pytest.raises(hf_testers.HFTestersUnavailable) as error:
        hf_testers.ensure_hf_testers("0.0.2.harnesstest", cache_root=tmp_path / "cache")
    message = str(error.value)
    assert "Could not download the transformers 0.0.2.harnesstest source distribution from PyPI" in message
    assert hf_testers.SDIST_ENV in message and "pip download" in message
    assert not (tmp_path / "cache" / "0.0.2.harnesstest").exists()
