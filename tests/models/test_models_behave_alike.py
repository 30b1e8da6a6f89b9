"""iTPN and MVP behave alike: one masking vocabulary and rule, one mask policy shared by model and run script."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest
import torch
from huggingface_hub.errors import StrictDataclassClassValidationError
from safetensors.torch import load_file, save_file
from torch import nn

import hf_unified_pretrain  # noqa: F401  (registers the Auto classes)
from hf_unified_pretrain import training
from hf_unified_pretrain.masking import BlockMaskGenerator, RandomMaskGenerator
from hf_unified_pretrain.models.itpn import (
    ITPNBackbone,
    ITPNConfig,
    ITPNForImageClassification,
    ITPNForPreTraining,
    ITPNModel,
)
from hf_unified_pretrain.models.mvp import (
    MVPBackbone,
    MVPConfig,
    MVPForImageClassification,
    MVPForPreTraining,
    MVPModel,
)
from hf_unified_pretrain.teachers import EMATeacher
from tests.registry_helpers import load_with_report

SCRIPTS = Path(__file__).resolve().parents[2] / "training_scripts"
MASKING_FIELDS = ("mask_ratio", "num_masking_patches", "mask_min_block_tokens", "mask_min_aspect", "mask_max_aspect")


def itpn_config(target: str = "pixel", **overrides) -> ITPNConfig:
    """64 px images with 16 px patches: a 4x4 grid."""
    extra = {"pretraining_target": "clip", "use_relative_position_bias": True} if target == "clip" else {}
    return ITPNConfig.from_preset("itpn-tiny-test", image_size=64, **extra, **overrides)


def mvp_config(**overrides) -> MVPConfig:
    """32 px images with 8 px patches: a 4x4 grid."""
    return MVPConfig.from_preset("tiny", **overrides)


# (name, config builder, model class, generator type the policy returns)
MODELS = [
    ("itpn-pixel", lambda **kw: itpn_config("pixel", **kw), ITPNForPreTraining, RandomMaskGenerator),
    ("itpn-clip", lambda **kw: itpn_config("clip", **kw), ITPNForPreTraining, BlockMaskGenerator),
    ("mvp", mvp_config, MVPForPreTraining, BlockMaskGenerator),
]
IDS = [entry[0] for entry in MODELS]


def test_both_configs_use_the_same_field_names():
    for config in (itpn_config(), mvp_config()):
        assert all(hasattr(config, name) for name in (*MASKING_FIELDS, "mlp_ratio"))
        for old_name in ("num_masked_patches", "min_block_tokens", "min_aspect", "max_aspect", "intermediate_size"):
            assert old_name not in config.to_dict()


@pytest.mark.parametrize(("name", "make_config", "model_class", "generator_type"), MODELS, ids=IDS)
def test_exact_count_wins_and_the_ratio_follows_mae_rounding(name, make_config, model_class, generator_type):
    with_count = model_class(make_config(num_masking_patches=5, mask_ratio=0.4)).mask_generator((4, 4))
    assert type(with_count) is generator_type
    assert with_count(3, generator=torch.Generator().manual_seed(0)).sum(1).tolist() == [5, 5, 5]

    # 0.4 of 16: MAE keeps int(16 * 0.6) = 9 visible, so 7 are masked (plain rounding would give 6).
    by_ratio = model_class(make_config(num_masking_patches=None, mask_ratio=0.4))
    assert by_ratio.mask_generator((4, 4))(2).sum(1).tolist() == [7, 7]
    # The count follows the resolution: a non-square 2x6 grid (12 patches) keeps 12 - int(12 * 0.6) = 5 masked.
    assert by_ratio.mask_generator((2, 6))(2).shape == (2, 12)
    assert by_ratio.mask_generator((2, 6))(2).sum(1).tolist() == [5, 5]
    # No grid: the grid at config.image_size.
    assert by_ratio.mask_generator()(1).shape == (1, 16)


@pytest.mark.parametrize(("name", "make_config", "model_class", "generator_type"), MODELS, ids=IDS)
def test_forward_masks_with_its_own_policy(name, make_config, model_class, generator_type):
    model = model_class(make_config(num_masking_patches=5, mask_ratio=0.5)).eval()
    size = model.config.image_size
    pixels = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    teacher_features = torch.randn(2, 16, model.config.teacher_dim)
    extra = {} if name == "itpn-pixel" else {"teacher_features": teacher_features}
    with torch.no_grad():
        output = model(pixels, **extra)
    assert output.bool_masked_pos.sum(1).tolist() == [5, 5]
    # sample_mask is the policy applied to the input's grid: same seed, same mask.
    expected = model.mask_generator((4, 4))(2, generator=torch.Generator().manual_seed(4))
    assert torch.equal(model.sample_mask(pixels, generator=torch.Generator().manual_seed(4)), expected)


@pytest.mark.parametrize(("name", "make_config", "model_class", "generator_type"), MODELS, ids=IDS)
def test_a_count_that_does_not_fit_the_input_is_named(name, make_config, model_class, generator_type):
    model = model_class(make_config(num_masking_patches=20))
    with pytest.raises(ValueError, match="num_masking_patches=20 does not fit an input with 16 patches"):
        model.mask_generator((4, 4))
    with pytest.raises(TypeError, match="grid_size must be a \\(height, width\\) patch grid"):
        model.mask_generator(16)


@pytest.mark.parametrize("make_config", [itpn_config, mvp_config], ids=["itpn", "mvp"])
@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"mask_ratio": 1.5}, "mask_ratio must lie in \\(0, 1\\)"),
        ({"mask_ratio": 0.0}, "mask_ratio must lie in \\(0, 1\\)"),
        ({"num_masking_patches": 0}, "num_masking_patches must be at least 1"),
        ({"num_masking_patches": None, "mask_ratio": None}, "Set mask_ratio or num_masking_patches"),
        ({"mask_min_block_tokens": 0}, "mask_min_block_tokens must be at least 1"),
        ({"mask_min_aspect": 0.0}, "mask_min_aspect must be > 0"),
        ({"mask_min_aspect": 0.5, "mask_max_aspect": 0.4}, "mask_max_aspect \\(0.4\\) must be >= mask_min_aspect"),
    ],
)
def test_masking_fields_are_validated_alike(make_config, overrides, message):
    with pytest.raises(StrictDataclassClassValidationError, match=message):
        make_config(**overrides)


def test_mvp_configs_saved_with_the_old_names_still_load(tmp_path):
    legacy = {"num_masked_patches": 7, "min_block_tokens": 3, "min_aspect": 0.4, "max_aspect": 2.0}
    config = MVPConfig.from_preset("tiny", intermediate_size=40, **legacy)
    assert (config.num_masking_patches, config.mask_min_block_tokens) == (7, 3)
    assert (config.mask_min_aspect, config.mask_max_aspect) == (0.4, 2.0)
    assert config.mlp_ratio == 40 / 32
    config.save_pretrained(tmp_path)
    reloaded = MVPConfig.from_pretrained(tmp_path)
    assert reloaded.num_masking_patches == 7 and "intermediate_size" not in reloaded.to_dict()
    assert MVPForPreTraining(reloaded).mvp.layers[0].mlp.fc1.out_features == 40


def test_mlp_width_is_mlp_ratio_times_hidden_size_in_both_models():
    itpn = ITPNModel(itpn_config(mlp_ratio=3.0))
    mvp = MVPModel(mvp_config(mlp_ratio=3.0))
    assert itpn.encoder.layers[0].mlp.fc1.out_features == 3 * itpn.config.hidden_size
    assert mvp.layers[0].mlp.fc1.out_features == 3 * mvp.config.hidden_size


# ----------------------------------------------------------------------------------------------------------------
# The run scripts build their collator from the model's policy
# ----------------------------------------------------------------------------------------------------------------


class _Stop(Exception):
    pass


@pytest.mark.parametrize("script", ["run_itpn", "run_mvp"])
def test_script_collator_masks_with_the_models_policy(script, tmp_path, monkeypatch, tiny_clip_teacher):
    captured = {}

    def capture(model, training_args, datasets, collator, *args, **kwargs):
        captured.update(model=model, collator=collator)
        raise _Stop

    monkeypatch.setattr(training, "build_trainer", capture)
    common = ["--output_dir", str(tmp_path), "--embedded_num_images", "4", "--report_to", "none", "--seed", "0"]
    if script == "run_itpn":
        # A count that differs from the ratio's (0.75 of 16 = 12) shows which rule the collator follows.
        args = ["--preset", "itpn-tiny-test", "--image_size", "64", "--config_overrides", "num_masking_patches=5"]
    else:
        args = ["--preset", "tiny", "--teacher_name_or_path", str(tiny_clip_teacher)]
    main = runpy.run_path(str(SCRIPTS / f"{script}.py"), run_name=script)["main"]
    with pytest.raises(_Stop):
        main([*args, *common])

    model, mask_generator = captured["model"], captured["collator"].mask_generator
    policy = model.mask_generator((4, 4))
    assert type(mask_generator) is type(policy)
    expected_count = 5 if script == "run_itpn" else model.config.num_masking_patches
    for generator in (mask_generator, policy):
        masks = generator(3, generator=torch.Generator().manual_seed(1))
        assert masks.shape == (3, 16) and masks.sum(1).tolist() == [expected_count] * 3
    # Same policy, same draws: the collator's masks are the ones the model would sample itself.
    size = model.config.image_size
    pixels = torch.zeros(3, 3, size, size)
    assert torch.equal(
        mask_generator(3, generator=torch.Generator().manual_seed(2)),
        model.sample_mask(pixels, generator=torch.Generator().manual_seed(2)),
    )


# ----------------------------------------------------------------------------------------------------------------
# Pre-training checkpoints load quietly into the classifier, the backbone and the bare model
# ----------------------------------------------------------------------------------------------------------------

PRETRAINING_CHECKPOINTS = {
    # every head a pre-training checkpoint can carry: pixel decoder / CLIP heads, auxiliary branch, MFM heads
    "itpn-pixel": lambda: ITPNForPreTraining(itpn_config("pixel", mfm_target="ema")),
    "itpn-clip": lambda: ITPNForPreTraining(itpn_config("clip", mfm_target="ema")),
    "mvp": lambda: MVPForPreTraining(mvp_config()),
}
TARGETS = {
    "itpn": (ITPNForImageClassification, ITPNBackbone, ITPNModel),
    "mvp": (MVPForImageClassification, MVPBackbone, MVPModel),
}
LOAD_CASES = [
    (checkpoint, target) for checkpoint in PRETRAINING_CHECKPOINTS for target in TARGETS[checkpoint.split("-")[0]]
]


@pytest.fixture(scope="module")
def pretraining_folders(tmp_path_factory) -> dict[str, Path]:
    folders = {}
    for name, build in PRETRAINING_CHECKPOINTS.items():
        torch.manual_seed(0)
        folders[name] = tmp_path_factory.mktemp(name)
        build().save_pretrained(folders[name])
    return folders


@pytest.mark.parametrize(("checkpoint", "target"), LOAD_CASES, ids=[f"{c}->{t.__name__}" for c, t in LOAD_CASES])
def test_pretraining_checkpoints_load_without_unexpected_keys(pretraining_folders, checkpoint, target):
    folder = pretraining_folders[checkpoint]
    model, info, log = load_with_report(target, folder)

    assert not info["unexpected_keys"]
    assert "UNEXPECTED" not in log
    assert not info["mismatched_keys"]
    # Only the new task head (and a pooler the checkpoint never had) starts from scratch.
    assert all(key.split(".")[-2] in {"classifier", "layernorm"} for key in info["missing_keys"]), info
    # The encoder weights did arrive: the first patch projection equals the checkpoint's.
    stored_state = load_file(str(folder / "model.safetensors"))
    stored = next(v for k, v in stored_state.items() if k.endswith("patch_embeddings.projection.weight"))
    loaded = dict(model.named_parameters())
    loaded_key = next(k for k in loaded if k.endswith("patch_embeddings.projection.weight"))
    torch.testing.assert_close(loaded[loaded_key].detach(), stored, rtol=0, atol=0)


@pytest.mark.parametrize("checkpoint, target", [("itpn-clip", ITPNForImageClassification), ("mvp", MVPBackbone)])
def test_an_unknown_key_is_still_reported(pretraining_folders, tmp_path, checkpoint, target):
    folder = pretraining_folders[checkpoint]
    for file in folder.iterdir():
        (tmp_path / file.name).write_bytes(file.read_bytes())
    state = load_file(str(tmp_path / "model.safetensors"))
    prefix = "itpn" if checkpoint.startswith("itpn") else "mvp"
    state[f"{prefix}.surprise.weight"] = torch.ones(2)
    save_file(state, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})

    _, info, log = load_with_report(target, tmp_path)

    assert set(info["unexpected_keys"]) == {f"{prefix}.surprise.weight"}
    assert "UNEXPECTED" in log and "surprise.weight" in log


# ----------------------------------------------------------------------------------------------------------------
# Teachers live in the named slots of the shared holder
# ----------------------------------------------------------------------------------------------------------------


class _PatchTokens(nn.Module):
    """A stand-in CLIP teacher: (B, 3, H, W) -> (B, N, dim) features of 16 px patches."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.projection = nn.Conv2d(3, dim, kernel_size=16, stride=16)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.projection(pixel_values).flatten(2).transpose(1, 2)


def test_itpn_keeps_its_clip_and_mfm_teachers_in_named_slots():
    model = ITPNForPreTraining(itpn_config("clip", mfm_target="ema"))
    clip_teacher = _PatchTokens(model.config.teacher_dim)
    model.set_teacher(clip_teacher)
    model.set_mfm_teacher(EMATeacher(model.itpn, base_momentum=0.9))

    assert set(model.teachers) == {"default", "mfm"}
    assert model.teacher is clip_teacher and model.mfm_teacher is model.get_teacher("mfm")
    assert not any(name.startswith("_mfm") for name in vars(model))  # no second, private holder
    assert set(model.state_dict()) == set(ITPNForPreTraining(model.config).state_dict())
    pixels = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        output = model(pixels)  # both teachers give targets: the CLIP features and the MFM pyramid
    assert {"clip", "mfm_stride4", "mfm_stride8", "mfm_stride16"} <= set(output.losses)
    model.set_teacher(None, name="mfm")
    assert model.mfm_teacher is None and model.teacher is clip_teacher


HEADS_THAT_NEVER_MASK = [
    (ITPNForImageClassification, lambda: itpn_config("clip", num_labels=3)),
    (ITPNBackbone, lambda: itpn_config("clip", out_features=["stage1", "stage2", "stage3", "stage4"])),
    (MVPForImageClassification, lambda: mvp_config(num_labels=3)),
    (MVPBackbone, lambda: mvp_config()),
]


@pytest.mark.parametrize(
    ("model_class", "make_config"), HEADS_THAT_NEVER_MASK, ids=[c.__name__ for c, _ in HEADS_THAT_NEVER_MASK]
)
def test_heads_that_never_mask_build_no_mask_token_and_train_every_parameter(model_class, make_config):
    config = make_config()
    model = model_class(config).train()
    assert not any("mask_token" in name for name, _ in model.named_parameters())
    pixels = torch.randn(2, 3, config.image_size, config.image_size, generator=torch.Generator().manual_seed(0))
    output = model(pixels)
    outputs = output.feature_maps if hasattr(output, "feature_maps") else (output.logits,)
    sum(value.square().mean() for value in outputs).backward()
    assert [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0] == []
