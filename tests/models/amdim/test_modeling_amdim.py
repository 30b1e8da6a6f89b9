"""transformers' common testers (ModelTesterMixin, BackboneTesterMixin, ConfigTester, ImageProcessingTestMixin) on
every AMDIM class. Harness: tests/hf_testers.py; tester: amdim_model_tester.py."""

from __future__ import annotations

import unittest

import torch

from hf_unified_pretrain.models.amdim import (
    AMDIMBackbone,
    AMDIMConfig,
    AMDIMForImageClassification,
    AMDIMForPreTraining,
    AMDIMImageProcessor,
    AMDIMModel,
)
from hf_unified_pretrain.models.amdim.modeling_amdim import AMDIMIdentityInitConv2d
from tests.hf_testers import (
    BackboneTesterMixin,
    CenterCropImageProcessingTester,
    ImageProcessingTestMixin,
    ModelTesterMixin,
    PilOnlyImageProcessingOverrides,
    VisionModelTestOverrides,
    run_test_methods,
)

from .amdim_model_tester import AMDIMModelTestBase, AMDIMModelTester


class AMDIMModelTest(AMDIMModelTestBase, unittest.TestCase):
    all_model_classes = (AMDIMModel, AMDIMForPreTraining, AMDIMForImageClassification, AMDIMBackbone)

    def test_config(self):
        self.config_tester.run_common_tests()


class AMDIMBatchNormModelTest(AMDIMModelTestBase, unittest.TestCase):
    """The `use_bn` layout (batch norms inside the trunk and the embedding heads) with a 2-component mixture."""

    all_model_classes = (AMDIMModel, AMDIMForPreTraining)
    config_overrides = {"use_bn": True, "num_mixture_components": 2}


class AMDIMBackboneTest(BackboneTesterMixin, unittest.TestCase):
    all_model_classes = (AMDIMBackbone,)
    config_class = AMDIMConfig
    has_attentions = False

    def setUp(self):
        self.model_tester = AMDIMModelTester(self)

    def test_config(self):
        # Upstream counts stages by `num_hidden_layers`; AMDIM's stages are its encoder's successive maps.
        config = AMDIMConfig(image_size=32, out_features=["stage1", "stage3"])
        self.assertEqual(config.stage_names, ["stem"] + [f"stage{i}" for i in range(1, 7)])
        self.assertEqual(config.out_indices, [1, 3])
        config = AMDIMConfig(image_size=128, out_features=None, out_indices=None)
        self.assertEqual(config.out_features, [config.stage_names[-1]])
        self.assertEqual(config.stage_names[-1], "stage7")
        config = AMDIMConfig(out_indices=[0, 2])
        self.assertEqual(config.out_features, ["stem", "stage2"])
        with self.assertRaises(ValueError):
            AMDIMConfig(out_features=["stage1", "stage2"], out_indices=[0, 2])


class AMDIMImageProcessingTester(CenterCropImageProcessingTester):
    image_processing_classes_by_backend = {"pil": AMDIMImageProcessor}


class AMDIMImageProcessingTest(PilOnlyImageProcessingOverrides, ImageProcessingTestMixin, unittest.TestCase):
    image_processor_tester_class = AMDIMImageProcessingTester


def test_the_testers_catch_an_uninitialised_parameter():
    """The suite must not pass by skipping: a model whose `_init_weights` forgets the embedding shortcut fails."""

    class ForgetfulAMDIMModel(AMDIMModel):
        @torch.no_grad()
        def _init_weights(self, module):
            super()._init_weights(module)
            if isinstance(module, AMDIMIdentityInitConv2d):
                module.weight.data.fill_(float("nan"))

    class BrokenInitTest(VisionModelTestOverrides, ModelTesterMixin, unittest.TestCase):
        all_model_classes = (ForgetfulAMDIMModel,)
        has_attentions = False

        def setUp(self):
            self.model_tester = AMDIMModelTester(self)

    result = run_test_methods(BrokenInitTest, "test_can_init_all_missing_weights")
    assert len(result.failures) + len(result.errors) == 1 and not result.skipped
