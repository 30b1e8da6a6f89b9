"""The AMDIM model tester for transformers' common testers and a ModelTesterMixin base with AMDIM's overrides (a
convolutional encoder: stage maps instead of token sequences, no attention)."""

from __future__ import annotations

import torch

from hf_unified_pretrain.models.amdim import (
    AMDIMBackbone,
    AMDIMConfig,
    AMDIMForImageClassification,
    AMDIMForPreTraining,
    AMDIMModel,
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
    "amdim",
    model=AMDIMModel,
    backbone=AMDIMBackbone,
    image_classification=AMDIMForImageClassification,
    pretraining=AMDIMForPreTraining,
)


class AMDIMModelTester:
    def __init__(
        self,
        parent,
        batch_size=3,
        image_size=32,
        num_channels=3,
        ndf=4,
        n_rkhs=16,
        n_depth=2,
        num_labels=3,
        is_training=True,
        **config_overrides,
    ):
        self.parent = parent
        self.batch_size = batch_size
        self.image_size = image_size
        self.num_channels = num_channels
        self.ndf = ndf
        self.n_rkhs = n_rkhs
        self.n_depth = n_depth
        self.num_labels = num_labels
        self.is_training = is_training
        self.config_overrides = config_overrides
        # Attributes the upstream mixins read; AMDIM has no tokens or attention heads.
        self.hidden_size = n_rkhs
        self.num_hidden_layers = n_depth
        self.num_attention_heads = 1
        self.seq_length = 1
        self.patch_size = 1
        self.out_features = ["stage2", "stage3", "stage6"]

    def get_config(self) -> AMDIMConfig:
        return AMDIMConfig(
            image_size=self.image_size,
            num_channels=self.num_channels,
            ndf=self.ndf,
            n_rkhs=self.n_rkhs,
            n_depth=self.n_depth,
            num_labels=self.num_labels,
            classifier_hidden_size=8,
            out_features=self.out_features,
            **self.config_overrides,
        )

    def prepare_config_and_inputs(self):
        pixel_values = floats_tensor([self.batch_size, self.num_channels, self.image_size, self.image_size])
        labels = ids_tensor([self.batch_size], self.num_labels)
        return self.get_config(), pixel_values, labels

    def prepare_config_and_inputs_for_common(self):
        config, pixel_values, _ = self.prepare_config_and_inputs()
        return config, {"pixel_values": pixel_values}

    def fixed_model_inputs(self, model_class, batch_size):
        """Pre-training gets a fixed second view, fixed 5x5 source locations and labels (so the online heads train)."""
        if model_class is not AMDIMForPreTraining:
            return {}
        generator = torch.Generator().manual_seed(11)
        shape = (batch_size, self.num_channels, self.image_size, self.image_size)
        return {
            "pixel_values_2": torch.rand(shape, generator=generator),
            "source_locations": torch.stack(
                [torch.arange(batch_size) % 25, (torch.arange(batch_size) * 7 + 3) % 25], dim=1
            ),
            "labels": torch.arange(batch_size) % self.num_labels,
        }

    def expected_stage_shapes(self, config: AMDIMConfig, batch_size: int) -> list[tuple[int, ...]]:
        sizes = {32: [30, 30, 14, 7, 5, 3, 1], 64: [62, 30, 14, 7, 5, 3, 1], 128: [64, 62, 30, 14, 7, 5, 3, 1]}
        return [
            (batch_size, channels, size, size)
            for channels, size in zip(config.stage_channels, sizes[config.image_size])
        ]


class AMDIMModelTestBase(VisionModelTestOverrides, ModelTesterMixin):
    """ModelTesterMixin for AMDIM classes; subclasses set `all_model_classes`."""

    has_attentions = False
    config_overrides: dict = {}

    def setUp(self):
        self.model_tester = AMDIMModelTester(self, **self.config_overrides)
        self.config_tester = ConfigTester(
            self,
            config_class=AMDIMConfig,
            has_text_modality=False,
            common_properties=["ndf", "n_rkhs", "n_depth"],
            ndf=16,
        )

    def test_hidden_states_output(self):
        # A ConvNet: the hidden states are the backbone stage maps (as upstream's ResNet test checks them).
        config, inputs_dict = self.model_tester.prepare_config_and_inputs_for_common()
        batch_size = inputs_dict["pixel_values"].shape[0]
        expected = self.model_tester.expected_stage_shapes(config, batch_size)
        for model_class in self.all_model_classes:
            for via_config in (False, True):
                model = model_class(config).eval()
                inputs = self._prepare_for_class(inputs_dict, model_class)
                if via_config:
                    model.config.output_hidden_states = True
                else:
                    inputs["output_hidden_states"] = True
                with torch.no_grad():
                    outputs = model(**inputs)
                self.assertEqual([tuple(h.shape) for h in outputs.hidden_states], expected)
