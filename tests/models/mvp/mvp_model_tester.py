"""The MVP model tester for transformers' common testers (shared by the test_modeling_mvp*.py modules) and a
ModelTesterMixin base with our MVP-specific overrides."""

from __future__ import annotations

import torch

from hf_unified_pretrain.models.mvp import (
    MVPBackbone,
    MVPConfig,
    MVPForImageClassification,
    MVPForPreTraining,
    MVPModel,
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
    "mvp_vision",
    model=MVPModel,
    backbone=MVPBackbone,
    image_classification=MVPForImageClassification,
    pretraining=MVPForPreTraining,
)


class MVPModelTester:
    def __init__(
        self,
        parent,
        batch_size=2,
        image_size=32,
        patch_size=8,
        num_channels=3,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        mlp_ratio=37 / 32,  # an MLP width of 37: not a multiple of the hidden size
        teacher_dim=24,
        num_masked_patches=6,
        type_sequence_label_size=10,
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
        self.mlp_ratio = mlp_ratio
        self.teacher_dim = teacher_dim
        self.num_masked_patches = num_masked_patches
        self.type_sequence_label_size = type_sequence_label_size
        self.is_training = is_training
        self.config_overrides = config_overrides
        self.num_patches = (image_size // patch_size) ** 2
        self.seq_length = self.num_patches + 1  # [CLS] + patches
        self.out_features = ["stage1", "stage2"]
        # the eager-vs-sdpa tester builds its own `bool_masked_pos`: `num_masks` ones, padded to `mask_length`
        self.num_masks = num_masked_patches
        self.mask_length = self.num_patches

    def get_config(self) -> MVPConfig:
        return MVPConfig(
            image_size=self.image_size,
            patch_size=self.patch_size,
            num_channels=self.num_channels,
            hidden_size=self.hidden_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            mlp_ratio=self.mlp_ratio,
            teacher_dim=self.teacher_dim,
            num_masking_patches=self.num_masked_patches,
            mask_min_block_tokens=2,
            drop_path_rate=0.0,
            num_labels=self.type_sequence_label_size,
            out_features=self.out_features,
            **self.config_overrides,
        )

    def prepare_config_and_inputs(self):
        pixel_values = floats_tensor([self.batch_size, self.num_channels, self.image_size, self.image_size])
        labels = ids_tensor([self.batch_size], self.type_sequence_label_size)
        return self.get_config(), pixel_values, labels

    def prepare_config_and_inputs_for_common(self):
        config, pixel_values, _ = self.prepare_config_and_inputs()
        return config, {"pixel_values": pixel_values}

    def fixed_model_inputs(self, model_class, batch_size):
        """Pre-training gets a fixed mask and fixed teacher targets, so no randomness or teacher is involved."""
        if model_class is not MVPForPreTraining:
            return {}
        mask = torch.zeros(batch_size, self.num_patches, dtype=torch.bool)
        for row in range(batch_size):
            mask[row, (torch.arange(self.num_masked_patches) * 3 + row) % self.num_patches] = True
        generator = torch.Generator().manual_seed(7)
        targets = torch.randn(batch_size, self.num_patches, self.teacher_dim, generator=generator)
        return {"bool_masked_pos": mask, "teacher_features": targets}

    def create_and_check_model(self, config, pixel_values, labels):
        model = MVPModel(config).eval()
        result = model(pixel_values)
        self.parent.assertEqual(result.last_hidden_state.shape, (self.batch_size, self.seq_length, self.hidden_size))
        self.parent.assertEqual(result.pooler_output.shape, (self.batch_size, self.hidden_size))

    def create_and_check_for_pretraining(self, config, pixel_values, labels):
        model = MVPForPreTraining(config).eval()
        inputs = self.fixed_model_inputs(MVPForPreTraining, self.batch_size)
        result = model(pixel_values, **inputs)
        self.parent.assertEqual(result.logits.shape, (self.batch_size, self.num_patches, self.teacher_dim))
        self.parent.assertEqual(result.loss.shape, ())
        self.parent.assertTrue(torch.equal(result.bool_masked_pos, inputs["bool_masked_pos"]))

    def create_and_check_for_image_classification(self, config, pixel_values, labels):
        model = MVPForImageClassification(config).eval()
        result = model(pixel_values, labels=labels)
        self.parent.assertEqual(result.logits.shape, (self.batch_size, self.type_sequence_label_size))
        self.parent.assertEqual(result.loss.shape, ())

    def create_and_check_backbone(self, config, pixel_values, labels):
        model = MVPBackbone(config).eval()
        result = model(pixel_values)
        grid = self.image_size // self.patch_size
        self.parent.assertEqual(len(result.feature_maps), len(self.out_features))
        for feature_map in result.feature_maps:
            self.parent.assertEqual(feature_map.shape, (self.batch_size, self.hidden_size, grid, grid))
        self.parent.assertEqual(model.channels, [self.hidden_size] * len(self.out_features))


class MVPModelTestBase(VisionModelTestOverrides, ModelTesterMixin):
    """ModelTesterMixin for MVP classes; subclasses set `all_model_classes` (and optionally `config_overrides`)."""

    config_overrides: dict = {}

    def setUp(self):
        self.model_tester = MVPModelTester(self, **self.config_overrides)
        self.config_tester = ConfigTester(
            self, config_class=MVPConfig, has_text_modality=False, hidden_size=37, num_attention_heads=1
        )
