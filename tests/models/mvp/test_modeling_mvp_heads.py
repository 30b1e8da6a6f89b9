"""transformers' common testers on MVPForImageClassification and MVPBackbone (ModelTesterMixin, BackboneTesterMixin).
Harness: tests/hf_testers.py."""

from __future__ import annotations

import unittest

from hf_unified_pretrain.models.mvp import MVPBackbone, MVPConfig, MVPForImageClassification
from tests.hf_testers import BackboneTesterMixin

from .mvp_model_tester import MVPModelTestBase, MVPModelTester


class MVPHeadsModelTest(MVPModelTestBase, unittest.TestCase):
    all_model_classes = (MVPForImageClassification, MVPBackbone)

    def test_for_image_classification(self):
        self.model_tester.create_and_check_for_image_classification(*self.model_tester.prepare_config_and_inputs())

    def test_backbone(self):
        self.model_tester.create_and_check_backbone(*self.model_tester.prepare_config_and_inputs())


class MVPBackboneTest(BackboneTesterMixin, unittest.TestCase):
    all_model_classes = (MVPBackbone,)
    config_class = MVPConfig
    has_attentions = True

    def setUp(self):
        self.model_tester = MVPModelTester(self)
