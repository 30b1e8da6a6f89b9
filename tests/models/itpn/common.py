"""Shared pieces of the iTPN common-tester modules: the model tester and the ModelTesterMixin overrides."""

import torch

from hf_unified_pretrain.models.itpn import (
    ITPNBackbone,
    ITPNConfig,
    ITPNForImageClassification,
    ITPNForPreTraining,
    ITPNModel,
)
from tests.hf_testers import (
    ConfigTester,
    ModelTesterMixin,
    VisionModelTestOverrides,
    expose_model_names_to_testers,
    floats_tensor,
    ids_tensor,
)

expose_model_names_to_testers(
    "itpn",
    model=ITPNModel,
    backbone=ITPNBackbone,
    image_classification=ITPNForImageClassification,
    pretraining=ITPNForPreTraining,
)


class ITPNModelTester:
    """A 32x32 input with 8x8 patches (2x2 inner pixels per inner patch) gives a 4x4 grid: 16 stage-3 tokens."""

    def __init__(
        self,
        parent,
        batch_size=2,
        image_size=32,
        patch_size=8,
        num_channels=3,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        fpn_dim=16,
        teacher_dim=12,
        num_masked_patches=6,
        type_sequence_label_size=5,
        is_training=True,
        **config_overrides,
    ):
        self.parent = parent
        self.batch_size = batch_size
        self.image_size = image_size
        self.patch_size = patch_size
        self.num_channels = num_channels
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.fpn_dim = fpn_dim
        self.teacher_dim = teacher_dim
        self.num_masked_patches = num_masked_patches
        self.type_sequence_label_size = type_sequence_label_size
        self.is_training = is_training
        self.config_overrides = config_overrides
        self.num_patches = (image_size // patch_size) ** 2
        self.seq_length = self.num_patches  # no [CLS] token
        self.out_features = ["stem", "stage1", "stage2", "stage3", "stage4"]
        # the eager-vs-sdpa tester builds its own `bool_masked_pos`: `num_masks` ones, padded to `mask_length`
        self.num_masks = num_masked_patches
        self.mask_length = self.num_patches

    @property
    def pretraining_target(self) -> str:
        return self.config_overrides.get("pretraining_target", "pixel")

    def get_config(self) -> ITPNConfig:
        return ITPNConfig(
            **{
                "image_size": self.image_size,
                "patch_size": self.patch_size,
                "num_channels": self.num_channels,
                "hidden_size": self.hidden_size,
                "stage1_depth": 1,
                "stage2_depth": 1,
                "num_hidden_layers": self.num_hidden_layers,
                "num_attention_heads": self.num_attention_heads,
                "fpn_dim": self.fpn_dim,
                "fpn_depth": 1,
                "decoder_hidden_size": 32,
                "decoder_num_hidden_layers": 1,
                "decoder_num_attention_heads": 2,
                "teacher_dim": self.teacher_dim,
                "num_masking_patches": self.num_masked_patches,
                "mask_min_block_tokens": 2,
                "aux_layer_index": 0,
                "num_labels": self.type_sequence_label_size,
                "out_features": self.out_features,
                **self.config_overrides,
            }
        )

    def prepare_config_and_inputs(self):
        pixel_values = floats_tensor([self.batch_size, self.num_channels, self.image_size, self.image_size])
        labels = ids_tensor([self.batch_size], self.type_sequence_label_size)
        return self.get_config(), pixel_values, labels

    def prepare_config_and_inputs_for_common(self):
        config, pixel_values, _ = self.prepare_config_and_inputs()
        return config, {"pixel_values": pixel_values}

    def seq_length_for(self, model_class) -> int:
        """Pixel pre-training drops the masked patches before stage 1."""
        if model_class is ITPNForPreTraining and self.pretraining_target == "pixel":
            return self.num_patches - self.num_masked_patches
        return self.num_patches

    def fixed_model_inputs(self, model_class, batch_size):
        """Pre-training gets a fixed mask (same count per row) and fixed teacher targets: no randomness, no teacher."""
        if model_class is not ITPNForPreTraining:
            return {}
        mask = torch.zeros(batch_size, self.num_patches, dtype=torch.bool)
        for row in range(batch_size):
            mask[row, (torch.arange(self.num_masked_patches) * 3 + row) % self.num_patches] = True
        inputs = {"bool_masked_pos": mask}
        if self.pretraining_target == "clip":
            generator = torch.Generator().manual_seed(7)
            inputs["teacher_features"] = torch.randn(
                batch_size, self.num_patches, self.teacher_dim, generator=generator
            )
        return inputs

    def create_and_check_model(self, config, pixel_values, labels):
        model = ITPNModel(config).eval()
        result = model(pixel_values)
        grid = self.image_size // self.patch_size
        self.parent.assertEqual(result.last_hidden_state.shape, (self.batch_size, self.num_patches, self.hidden_size))
        self.parent.assertEqual(result.pooler_output.shape, (self.batch_size, self.hidden_size))
        widths = (self.hidden_size // 4, self.hidden_size // 2, self.hidden_size)
        for feature, side, width in zip(result.stage_features, (4, 2, 1), widths):
            self.parent.assertEqual(feature.shape, (self.batch_size, grid * grid, side, side, width))
        if config.use_pyramid:
            for level, side in zip(result.pyramid_features, (4, 2, 1)):
                self.parent.assertEqual(level.shape, (self.batch_size, grid * grid, side, side, self.fpn_dim))
        else:
            self.parent.assertIsNone(result.pyramid_features)

    def create_and_check_for_pretraining(self, config, pixel_values, labels):
        model = ITPNForPreTraining(config).eval()
        inputs = self.fixed_model_inputs(ITPNForPreTraining, self.batch_size)
        result = model(pixel_values, **inputs)
        width = self.patch_size**2 * self.num_channels if self.pretraining_target == "pixel" else self.teacher_dim
        self.parent.assertEqual(result.logits.shape, (self.batch_size, self.num_patches, width))
        self.parent.assertEqual(result.loss.shape, ())
        self.parent.assertTrue(torch.equal(result.bool_masked_pos, inputs["bool_masked_pos"]))

    def create_and_check_for_image_classification(self, config, pixel_values, labels):
        model = ITPNForImageClassification(config).eval()
        result = model(pixel_values, labels=labels)
        self.parent.assertEqual(result.logits.shape, (self.batch_size, self.type_sequence_label_size))
        self.parent.assertEqual(result.loss.shape, ())

    def create_and_check_backbone(self, config, pixel_values, labels):
        model = ITPNBackbone(config).eval()
        result = model(pixel_values)
        self.parent.assertEqual(len(result.feature_maps), len(self.out_features))
        strides = {"stem": 2, "stage1": 2, "stage2": 4, "stage3": 8, "stage4": 16}  # patch 8: strides halve
        for name, feature_map, channels in zip(self.out_features, result.feature_maps, model.channels):
            side = self.image_size // strides[name]
            self.parent.assertEqual(feature_map.shape, (self.batch_size, channels, side, side))


class ITPNModelTestBase(VisionModelTestOverrides, ModelTesterMixin):
    """ModelTesterMixin with the iTPN overrides; concrete classes add `unittest.TestCase` and a layout."""

    all_model_classes = (ITPNModel, ITPNForPreTraining, ITPNBackbone, ITPNForImageClassification)
    config_overrides: dict = {}

    def setUp(self):
        if "eager_matches_sdpa_inference" in self._testMethodName and "_fp32_" not in self._testMethodName:
            # 16 of the 24 variants run fp16/bf16 matmuls on CPU, which dominated this file's runtime on 2 cores and
            # test nothing iTPN-specific; the 8 float32 variants (all padding settings) still compare eager and sdpa.
            self.skipTest("half-precision eager-vs-sdpa variants are skipped on CPU (fp32 variants run)")
        self.model_tester = ITPNModelTester(self, **self.config_overrides)
        self.config_tester = ConfigTester(
            self, config_class=ITPNConfig, has_text_modality=False, hidden_size=36, num_attention_heads=2
        )

    def test_config(self):
        self.config_tester.run_common_tests()

    def _per_model_class(self, upstream_test, backbone_check=None):
        """Runs an upstream test one class at a time, with that class's sequence length (token dropping changes it)."""
        all_classes, seq_length = self.all_model_classes, self.model_tester.seq_length
        try:
            for model_class in all_classes:
                if model_class is ITPNBackbone and backbone_check is not None:
                    backbone_check()
                    continue
                self.all_model_classes = (model_class,)
                self.model_tester.seq_length = self.model_tester.seq_length_for(model_class)
                upstream_test()
        finally:
            self.all_model_classes, self.model_tester.seq_length = all_classes, seq_length

    def test_attention_outputs(self):
        self._per_model_class(super().test_attention_outputs)

    def test_hidden_states_output(self):
        self._per_model_class(super().test_hidden_states_output, self._check_backbone_hidden_states)

    def _check_backbone_hidden_states(self):
        """The backbone's hidden states are its stage maps (stem + pyramid levels), not the stage-3 layers."""
        config, inputs = self.model_tester.prepare_config_and_inputs_for_common()
        model = ITPNBackbone(config).eval()
        with torch.no_grad():
            outputs = model(**inputs, output_hidden_states=True)
        self.assertEqual(len(outputs.hidden_states), 5)  # stem + stage1..stage4 (the last requested stage)
        self.assertEqual([m.shape[-1] for m in outputs.hidden_states], [16, 16, 8, 4, 2])
        self.assertEqual([m.shape[1] for m in outputs.hidden_states], model.num_features[:5])

    def test_model(self):
        self.model_tester.create_and_check_model(*self.model_tester.prepare_config_and_inputs())

    def test_for_pretraining(self):
        self.model_tester.create_and_check_for_pretraining(*self.model_tester.prepare_config_and_inputs())

    def test_for_image_classification(self):
        self.model_tester.create_and_check_for_image_classification(*self.model_tester.prepare_config_and_inputs())

    def test_backbone(self):
        self.model_tester.create_and_check_backbone(*self.model_tester.prepare_config_and_inputs())
