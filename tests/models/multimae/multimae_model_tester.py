"""The MultiMAE model tester for transformers' common testers (shared by the test_modeling_multimae*.py modules)."""

from __future__ import annotations

import torch

from hf_unified_pretrain.models.multimae import (
    ModalitySpec,
    MultiMAEBackbone,
    MultiMAEConfig,
    MultiMAEForImageClassification,
    MultiMAEForPreTraining,
    MultiMAEForSemanticSegmentation,
    MultiMAEModel,
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
    "multimae",
    model=MultiMAEModel,
    backbone=MultiMAEBackbone,
    image_classification=MultiMAEForImageClassification,
    semantic_segmentation=MultiMAEForSemanticSegmentation,
    pretraining=MultiMAEForPreTraining,
)


class MultiMAEModelTester:
    """RGB inputs (`pixel_values`) on an RGB model.

    With `num_visible` set, `ForPreTraining` gets a fixed mask keeping that many RGB tokens, and `seq_length`
    counts the encoded tokens (visible + global), as the encoder drops the masked ones.
    """

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
        num_labels=3,
        num_visible=None,
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
        self.num_labels = num_labels
        self.type_sequence_label_size = num_labels
        self.is_training = is_training
        self.config_overrides = config_overrides
        self.num_patches = (image_size // patch_size) ** 2
        self.num_visible = num_visible
        self.seq_length = (num_visible if num_visible is not None else self.num_patches) + 1
        self.out_features = ["stage1", "stage2"]
        # the eager-vs-sdpa tester builds its own `bool_masked_pos`: `num_masks` ones, padded to `mask_length`
        self.num_masks = self.num_patches - (num_visible or 6)
        self.mask_length = self.num_patches

    def get_config(self) -> MultiMAEConfig:
        fields = dict(
            image_size=self.image_size,
            patch_size=self.patch_size,
            hidden_size=self.hidden_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            num_labels=self.num_labels,
            out_features=self.out_features,
        )
        # RGB only, so that an RGB batch uses every parameter (the gradient-checkpointing tests require a gradient
        # for each); multi-modal models are covered by test_multimae_pretraining.py.
        fields.update(
            modalities=[ModalitySpec("rgb", "image").to_dict()], input_modalities=["rgb"], output_modalities=["rgb"]
        )
        fields.update(self.config_overrides)
        return MultiMAEConfig.from_preset("tiny", **fields)

    def prepare_config_and_inputs(self):
        pixel_values = floats_tensor([self.batch_size, self.num_channels, self.image_size, self.image_size])
        labels = ids_tensor([self.batch_size], self.num_labels)
        return self.get_config(), pixel_values, labels

    def prepare_config_and_inputs_for_common(self):
        config, pixel_values, _ = self.prepare_config_and_inputs()
        return config, {"pixel_values": pixel_values}

    def fixed_model_inputs(self, model_class, batch_size):
        if model_class is not MultiMAEForPreTraining or self.num_visible is None:
            return {}
        mask = torch.ones(batch_size, self.num_patches, dtype=torch.bool)
        for row in range(batch_size):
            mask[row, (torch.arange(self.num_visible) * 3 + row) % self.num_patches] = False
        return {"bool_masked_pos": mask}


class MultiMAEModelTestBase(VisionModelTestOverrides, ModelTesterMixin):
    tester_kwargs: dict = {}

    def setUp(self):
        self.model_tester = MultiMAEModelTester(self, **self.tester_kwargs)
        self.config_tester = ConfigTester(
            self, config_class=MultiMAEConfig, has_text_modality=False, hidden_size=36, num_attention_heads=2
        )
