"""The InternImage model tester for transformers' common testers (shared by the test_modeling_internimage*.py
modules), in the three block orders of the original (pre-norm T, post-norm + layer-scale S-XL, res-post-norm H with
the attention-pooling head)."""

from __future__ import annotations

import unittest

import torch

from hf_unified_pretrain.models.internimage import (
    InternImageBackbone,
    InternImageConfig,
    InternImageForImageClassification,
    InternImageModel,
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
    "internimage",
    model=InternImageModel,
    backbone=InternImageBackbone,
    image_classification=InternImageForImageClassification,
)

# Block orders of the original, at tester size (H-like: 5x5 depth-wise conv, center feature scale, level-2 post norms
# and the attention-pooling head with small widths).
LAYOUTS = {
    "pre_norm": {},
    "post_norm": {"post_norm": True, "layer_scale": 0.5},
    "res_post_norm": {
        "res_post_norm": True,
        "dw_kernel_size": 5,
        "center_feature_scale": True,
        "level2_post_norm": True,
        "level2_post_norm_block_ids": [0, 1],
        "use_clip_projector": True,
        "clip_pretrain_embed_dim": 32,
        "clip_num_heads": 4,
        "clip_embed_dim": 24,
    },
}


class InternImageModelTester:
    def __init__(
        self,
        parent,
        batch_size=2,
        image_size=64,
        num_channels=3,
        channels=16,
        depths=(1, 1, 2, 1),
        groups=(1, 2, 4, 8),
        type_sequence_label_size=10,
        is_training=True,
        **config_overrides,
    ):
        self.parent = parent
        self.batch_size = batch_size
        self.image_size = image_size
        self.num_channels = num_channels
        self.channels = channels
        self.depths = list(depths)
        self.groups = list(groups)
        self.type_sequence_label_size = type_sequence_label_size
        self.is_training = is_training
        self.config_overrides = config_overrides
        # attributes the common testers read
        self.hidden_size = channels
        self.num_hidden_layers = max(self.depths)
        self.num_attention_heads = config_overrides.get("clip_num_heads", 1)
        self.seq_length = (image_size // 32) ** 2
        self.out_features = ["stage1", "stage2", "stage3", "stage4"]

    def get_config(self) -> InternImageConfig:
        return InternImageConfig(
            channels=self.channels,
            depths=self.depths,
            groups=self.groups,
            image_size=self.image_size,
            num_channels=self.num_channels,
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

    def create_and_check_model(self, config, pixel_values, labels):
        result = InternImageModel(config).eval()(pixel_values)
        width = self.channels * 8
        self.parent.assertEqual(result.last_hidden_state.shape, (self.batch_size, width, 2, 2))
        self.parent.assertEqual(result.pooler_output.shape, (self.batch_size, width))

    def create_and_check_for_image_classification(self, config, pixel_values, labels):
        result = InternImageForImageClassification(config).eval()(pixel_values, labels=labels)
        self.parent.assertEqual(result.logits.shape, (self.batch_size, self.type_sequence_label_size))
        self.parent.assertEqual(result.loss.shape, ())

    def create_and_check_backbone(self, config, pixel_values, labels):
        model = InternImageBackbone(config).eval()
        feature_maps = model(pixel_values).feature_maps
        self.parent.assertEqual(len(feature_maps), 4)
        for index, feature_map in enumerate(feature_maps):
            side = self.image_size // 2 ** (index + 2)
            self.parent.assertEqual(feature_map.shape, (self.batch_size, self.channels * 2**index, side, side))
        self.parent.assertEqual(model.channels, [self.channels * 2**index for index in range(4)])


class InternImageModelTestBase(VisionModelTestOverrides, ModelTesterMixin):
    """ModelTesterMixin for InternImage classes; subclasses set `config_overrides` (one of `LAYOUTS`)."""

    all_model_classes = (InternImageModel, InternImageForImageClassification, InternImageBackbone)
    has_attentions = False
    config_overrides: dict = {}

    def setUp(self):
        self.model_tester = InternImageModelTester(self, **self.config_overrides)
        self.config_tester = ConfigTester(
            self,
            config_class=InternImageConfig,
            has_text_modality=False,
            common_properties=["channels", "depths", "groups", "hidden_sizes", "num_hidden_layers"],
            channels=32,
            groups=[1, 2, 4, 8],
        )

    def test_hidden_states_output(self):
        """Stem and every stage (before downsampling), NCHW, strides 4, 4, 8, 16, 32 (ResNet/Swin-style check)."""
        config, inputs = self.model_tester.prepare_config_and_inputs_for_common()
        for model_class in self.all_model_classes:
            for flag_in_config in (False, True):
                config.output_hidden_states = flag_in_config
                model = model_class(config).eval()
                kwargs = {} if flag_in_config else {"output_hidden_states": True}
                with torch.no_grad():
                    outputs = model(**self._prepare_for_class(inputs, model_class), **kwargs)
                hidden_states = outputs.hidden_states
                self.assertEqual(len(hidden_states), 5)
                widths = [self.model_tester.channels] + [self.model_tester.channels * 2**i for i in range(4)]
                strides = [4, 4, 8, 16, 32]
                for hidden, width, stride in zip(hidden_states, widths, strides):
                    side = self.model_tester.image_size // stride
                    self.assertEqual(tuple(hidden.shape[1:]), (width, side, side))
            config.output_hidden_states = False

    @unittest.skip(reason="InternImage has no attention maps (a conv backbone; the H/G pooling head is not recorded)")
    def test_attention_outputs(self):
        pass
