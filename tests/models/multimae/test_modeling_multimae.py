"""transformers' common testers (ModelTesterMixin, BackboneTesterMixin, ConfigTester) on every MultiMAE class.
Harness: tests/hf_testers.py."""

from __future__ import annotations

import unittest

from hf_unified_pretrain.models.multimae import (
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

    Outputs rgb + norm_rgb."""

    all_model_classes = (MultiMAEForPreTraining,)
    tester_kwargs = {"num_visible": 6}


class MultiMAEBackboneTest(BackboneTesterMixin, unittest.TestCase):
    all_model_classes = (MultiMAEBackbone,)
    config_class = MultiMAEConfig
    has_attentions = True

    def setUp(self):
        self.model_tester = MultiMAEModelTester(self)
