"""transformers' common testers on the other BEiT layout (a relative position bias table per block, absolute
positions, [CLS] pooling after a final norm, no layer-scale), all four MVP classes.

The default layout runs the full ModelTesterMixin in test_modeling_mvp*.py; here the testers that exercise what the
layout changes (weights, init, saving, numerics, outputs, training) run, the rest is skipped to keep the file fast.
"""

from __future__ import annotations

import unittest

from hf_unified_pretrain.models.mvp import MVPBackbone, MVPForImageClassification, MVPForPreTraining, MVPModel

from .mvp_model_tester import MVPModelTestBase

_LAYOUT_SENSITIVE_TESTS = (
    "test_layout_sensitive_tests_exist",
    "test_attention_outputs",
    "test_batching_equivalence",
    "test_can_init_all_missing_weights",
    "test_can_use_safetensors",
    "test_correct_missing_keys",
    "test_determinism",
    "test_eager_matches_sdpa_inference_08_fp32_pad_left_sdpa_kernels",
    "test_eager_matches_sdpa_inference_24_fp32_pad_left_output_attentions",
    "test_from_pretrained_no_checkpoint",
    "test_hidden_states_output",
    "test_init_weights_can_init_buffers",
    "test_load_save_without_tied_weights",
    "test_model_outputs_equivalence",
    "test_save_load",
    "test_training",
    "test_training_gradient_checkpointing",
)


class MVPPerLayerBiasModelTest(MVPModelTestBase, unittest.TestCase):
    all_model_classes = (MVPModel, MVPForPreTraining, MVPForImageClassification, MVPBackbone)
    config_overrides = {
        "use_relative_position_bias": True,
        "use_shared_relative_position_bias": False,
        "use_absolute_position_embeddings": True,
        "use_mean_pooling": False,
        "layer_scale_init_value": 0.0,
    }

    def setUp(self):
        if self._testMethodName not in _LAYOUT_SENSITIVE_TESTS:
            self.skipTest("layout-independent; runs on the default layout in test_modeling_mvp*.py")
        super().setUp()

    def test_layout_sensitive_tests_exist(self):
        missing = [name for name in _LAYOUT_SENSITIVE_TESTS if not hasattr(self, name)]
        self.assertEqual(missing, [])
