"""transformers' common testers (ModelTesterMixin, BackboneTesterMixin, ConfigTester) on every MultiMAE class.
Harness: tests/hf_testers.py."""

from __future__ import annotations

import unittest

from hf_unified_pretrain.models.multimae import (
    ModalitySpec,
    MultiMAEBackbone,
    MultiMAEConfig,
    MultiMAEForImageClassification,
    MultiMAEForPreTraining,
    MultiMAEForSemanticSegmentation,
    MultiMAEModel,
)
from tests.hf_testers import BackboneTesterMixin

from .multimae_model_tester import MultiMAEModelTestBase, MultiMAEModelTester


class MultiMAEModelTest(MultiMAEModelTestBase, unittest.TestCase):
    all_model_classes = (
        MultiMAEModel,
        MultiMAEForImageClassification,
        MultiMAEForSemanticSegmentation,
        MultiMAEBackbone,
    )

    def test_config(self):
        self.config_tester.run_common_tests()


class MultiMAEForPreTrainingTest(MultiMAEModelTestBase, unittest.TestCase):
    """The pre-training model with a fixed mask keeping 6 of the 16 RGB tokens (encoder sequence = 6 + 1).

    Built for RGB only (outputs rgb + norm_rgb), so that every parameter is used by an RGB-only batch (the
    gradient-checkpointing tests require a gradient for each); the multi-modal model's gradients are checked in
    test_multimae_pretraining.py."""

    all_model_classes = (MultiMAEForPreTraining,)
    tester_kwargs = {
        "num_visible": 6,
        "modalities": [ModalitySpec("rgb", "image").to_dict()],
        "input_modalities": ["rgb"],
        "output_modalities": ["rgb"],
    }


class MultiMAEBackboneTest(BackboneTesterMixin, unittest.TestCase):
    all_model_classes = (MultiMAEBackbone,)
    config_class = MultiMAEConfig
    has_attentions = True

    def setUp(self):
        self.model_tester = MultiMAEModelTester(self)
