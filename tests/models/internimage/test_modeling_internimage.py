"""transformers' common testers (ModelTesterMixin, ConfigTester, BackboneTesterMixin) on every InternImage class, in
the original's three block orders. Harness: tests/hf_testers.py."""

from __future__ import annotations

import unittest

import torch

from hf_unified_pretrain.models.internimage import InternImageBackbone, InternImageConfig, InternImageModel
from hf_unified_pretrain.models.internimage.modeling_internimage import InternImageLayer
from tests.hf_testers import BackboneTesterMixin, ModelTesterMixin, VisionModelTestOverrides, run_test_methods

from .internimage_model_tester import LAYOUTS, InternImageModelTestBase, InternImageModelTester


class InternImagePreNormModelTest(InternImageModelTestBase, unittest.TestCase):
    config_overrides = LAYOUTS["pre_norm"]

    def test_config(self):
        self.config_tester.run_common_tests()

    def test_model(self):
        self.model_tester.create_and_check_model(*self.model_tester.prepare_config_and_inputs())

    def test_for_image_classification(self):
        self.model_tester.create_and_check_for_image_classification(*self.model_tester.prepare_config_and_inputs())

    def test_backbone(self):
        self.model_tester.create_and_check_backbone(*self.model_tester.prepare_config_and_inputs())


class InternImagePostNormModelTest(InternImageModelTestBase, unittest.TestCase):
    config_overrides = LAYOUTS["post_norm"]

    def test_for_image_classification(self):
        self.model_tester.create_and_check_for_image_classification(*self.model_tester.prepare_config_and_inputs())


class InternImageResPostNormModelTest(InternImageModelTestBase, unittest.TestCase):
    config_overrides = LAYOUTS["res_post_norm"]

    def test_for_image_classification(self):
        self.model_tester.create_and_check_for_image_classification(*self.model_tester.prepare_config_and_inputs())


class InternImageBackboneTest(BackboneTesterMixin, unittest.TestCase):
    all_model_classes = (InternImageBackbone,)
    config_class = InternImageConfig
    has_attentions = False

    def setUp(self):
        self.model_tester = InternImageModelTester(self)


def test_the_testers_catch_an_uninitialised_parameter():
    """The suite must not pass by skipping: a model whose `_init_weights` forgets the layer-scale vectors fails."""

    class ForgetfulInternImageModel(InternImageModel):
        @torch.no_grad()
        def _init_weights(self, module):
            if not isinstance(module, InternImageLayer):
                super()._init_weights(module)

    class BrokenInitTest(VisionModelTestOverrides, ModelTesterMixin, unittest.TestCase):
        all_model_classes = (ForgetfulInternImageModel,)
        has_attentions = False

        def setUp(self):
            self.model_tester = InternImageModelTester(self, **LAYOUTS["post_norm"])

    result = run_test_methods(BrokenInitTest, "test_can_init_all_missing_weights")
    assert len(result.failures) + len(result.errors) == 1 and not result.skipped
