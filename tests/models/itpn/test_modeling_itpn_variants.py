"""transformers' ModelTesterMixin on the other iTPN layouts: CLIP pre-training (mask-token replacement, rel-pos
bias, layer scale, auxiliary branch) and Fast-iTPN (C-MLP, SwiGLU, sub-LN, no pyramid)."""

import unittest

from hf_unified_pretrain.models.itpn import ITPNForImageClassification, ITPNForPreTraining, ITPNModel
from tests.models.itpn.common import ITPNModelTestBase


class ITPNClipModelTest(ITPNModelTestBase, unittest.TestCase):
    """CLIP pre-training layout: mask-token replacement, rel-pos bias per block, layer scale, auxiliary branch."""

    all_model_classes = (ITPNModel, ITPNForPreTraining)
    config_overrides = {
        "pretraining_target": "clip",
        "use_relative_position_bias": True,
        "layer_scale_init_value": 0.1,
    }


class ITPNFastModelTest(ITPNModelTestBase, unittest.TestCase):
    """Fast-iTPN layout: C-MLP stages 1-2, SwiGLU and sub-LN, final norm before mean pooling, no pyramid."""

    all_model_classes = (ITPNModel, ITPNForImageClassification)
    config_overrides = {
        "use_conv_mlp": True,
        "use_swiglu": True,
        "use_sub_ln": True,
        "use_patch_norm": False,
        "use_mean_pooling": False,
        "use_pyramid": False,
        "layer_scale_init_value": 0.1,
        "mlp_ratio": 3.0,
    }

    def test_for_pretraining(self):
        with self.assertRaisesRegex(ValueError, "use_pyramid=True"):
            ITPNForPreTraining(self.model_tester.get_config())
