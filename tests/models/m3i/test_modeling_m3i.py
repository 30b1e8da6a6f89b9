"""transformers' common testers (ModelTesterMixin, ConfigTester) on M3IModel and M3IForPreTraining, once per backbone:
InternImage tiny (`tiny` preset) and MVP's ViT (`tiny-vit`). The pre-training class runs with the category and
image-text terms, whose inputs need no EMA teacher — the dense terms are covered in test_m3i.py.
Harness: tests/hf_testers.py."""

from __future__ import annotations

import unittest

import torch

from hf_unified_pretrain.models.m3i import M3IConfig, M3IForPreTraining, M3IModel
from tests.hf_testers import (
    ConfigTester,
    ModelTesterMixin,
    VisionModelTestOverrides,
    expose_model_names_to_testers,
    floats_tensor,
)

expose_model_names_to_testers("m3i", model=M3IModel, pretraining=M3IForPreTraining)


class M3IModelTester:
    """Tiny M3I around the backbone of `preset`; `hidden_size` / `num_hidden_layers` / `seq_length` describe the
    backbone's hidden states (used by the generic hidden-states test of the ViT variant)."""

    def __init__(self, parent, batch_size=3, preset="tiny"):
        self.parent = parent
        self.batch_size = batch_size
        self.preset = preset
        config = self.get_config()
        backbone = config.backbone_config
        self.image_size = config.image_size
        self.num_channels = 3
        self.num_labels = config.num_labels
        self.is_training = True
        self.hidden_size = getattr(backbone, "hidden_size", 32)
        # Only the ViT variant runs the generic hidden-states test; InternImage's block count is not a layer count.
        self.num_hidden_layers = backbone.num_hidden_layers if backbone.model_type == "mvp_vision" else 1
        self.num_attention_heads = config.decoder_num_attention_heads
        self.patch_size = config.feature_stride
        # ViT hidden states keep the [CLS] token: (image_size / patch_size) ** 2 + 1 tokens
        self.seq_length = (config.image_size // config.feature_stride) ** 2 + 1
        self.text_hidden_size = config.text_hidden_size

    def get_config(self) -> M3IConfig:
        return M3IConfig.from_preset(self.preset, intra_view_loss_weight=0.0, inter_view_loss_weight=0.0)

    def prepare_config_and_inputs_for_common(self):
        pixel_values = floats_tensor([self.batch_size, self.num_channels, self.image_size, self.image_size])
        return self.get_config(), {"pixel_values": pixel_values}

    def fixed_model_inputs(self, model_class, batch_size):
        if model_class is not M3IForPreTraining:
            return {}
        generator = torch.Generator().manual_seed(5)
        return {
            "labels": torch.arange(batch_size) % self.num_labels,
            "text_features": torch.randn(batch_size, self.text_hidden_size, generator=generator),
        }


class M3IModelTest(VisionModelTestOverrides, ModelTesterMixin, unittest.TestCase):
    all_model_classes = (M3IModel, M3IForPreTraining)
    has_attentions = False
    test_resize_embeddings = False

    def setUp(self):
        self.model_tester = M3IModelTester(self)
        self.config_tester = ConfigTester(self, config_class=M3IConfig, has_text_modality=False)

    def test_config(self):
        self.config_tester.create_and_test_config_to_json_string()
        self.config_tester.create_and_test_config_to_json_file()
        self.config_tester.create_and_test_config_from_and_save_pretrained()

    def test_hidden_states_output(self):
        # A ConvNet backbone: the hidden states are InternImage's stem and stage maps (as AMDIM's / ResNet's tests).
        config, inputs_dict = self.model_tester.prepare_config_and_inputs_for_common()
        backbone = config.backbone_config
        channels = [backbone.channels, *backbone.hidden_sizes]
        strides = [4, 4, 8, 16, 32]
        expected = [(3, c, 64 // s, 64 // s) for c, s in zip(channels, strides)]
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


class M3IViTModelTest(VisionModelTestOverrides, ModelTesterMixin, unittest.TestCase):
    """The same testers with MVP's ViT as the backbone; its hidden states are the ViT's token sequences (embeddings +
    one per layer, [CLS] included), checked by the generic hidden-states test."""

    all_model_classes = (M3IModel, M3IForPreTraining)
    has_attentions = False
    test_resize_embeddings = False

    def setUp(self):
        self.model_tester = M3IModelTester(self, preset="tiny-vit")
        self.config_tester = ConfigTester(self, config_class=M3IConfig, has_text_modality=False)

    def test_backbone_is_the_vit(self):
        config = self.model_tester.get_config()
        self.assertEqual(config.backbone_config.model_type, "mvp_vision")
        self.assertEqual(type(M3IModel(config).backbone).__name__, "MVPBackbone")

    def test_config(self):
        self.config_tester.create_and_test_config_to_json_string()
        self.config_tester.create_and_test_config_to_json_file()
        self.config_tester.create_and_test_config_from_and_save_pretrained()
