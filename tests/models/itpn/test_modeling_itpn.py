"""transformers' own common testers (ModelTesterMixin, BackboneTesterMixin, ConfigTester, ImageProcessingTestMixin)
run against the iTPN classes in the pixel pre-training layout, plus both backbone layouts and the image processor
(see tests/hf_testers.py for the harness; tests/models/itpn/common.py for the shared tester).
"""

import unittest

import torch

from hf_unified_pretrain.models.itpn import ITPNBackbone, ITPNConfig, ITPNImageProcessor, ITPNModel
from tests.hf_testers import (
    BackboneTesterMixin,
    CenterCropImageProcessingTester,
    ImageProcessingTestMixin,
    ModelTesterMixin,
    PilOnlyImageProcessingOverrides,
    VisionModelTestOverrides,
    run_test_methods,
)
from tests.models.itpn.common import ITPNModelTestBase, ITPNModelTester


class ITPNModelTest(ITPNModelTestBase, unittest.TestCase):
    """Pixel pre-training layout (iTPN-pixel, HiViT-style stages, no rel-pos bias): token dropping."""


class ITPNBackboneTest(BackboneTesterMixin, unittest.TestCase):
    """Segmentation layout (concatenated levels, max pooling)."""

    all_model_classes = (ITPNBackbone,)
    config_class = ITPNConfig
    has_attentions = True
    layout = "seg"

    def setUp(self):
        self.model_tester = ITPNModelTester(self, backbone_layout=self.layout)

    def test_config(self):
        # Upstream derives the stage count from `num_hidden_layers` (a ViT has a stage per layer); iTPN's stages are
        # its 5 strides. Same checks as upstream, with that count.
        config_class = self.config_class
        config = config_class(out_features=["stage1", "stage3"])
        self.assertEqual(config.stage_names, ["stem", "stage1", "stage2", "stage3", "stage4", "stage5"])
        self.assertEqual(config.out_indices, [1, 3])
        config = config_class(out_features=None, out_indices=None)
        self.assertEqual(config.out_features, [config.stage_names[-1]])
        self.assertEqual(config.out_indices, [len(config.stage_names) - 1])
        config = config_class(out_features=["stem", "stage1"], out_indices=[0, 1])
        self.assertEqual((config.out_features, config.out_indices), (["stem", "stage1"], [0, 1]))
        config = config_class(out_indices=[0, 2])
        self.assertEqual(config.out_features, ["stem", "stage2"])
        with self.assertRaises(ValueError):
            config_class(out_features=["stage1", "stage2"], out_indices=[0, 2])


class ITPNDetBackboneTest(ITPNBackboneTest):
    """Detection layout (pyramid levels only, average pooling), including the stride-64 stage."""

    layout = "det"

    def setUp(self):
        super().setUp()
        self.model_tester.out_features = ["stage1", "stage2", "stage3", "stage4", "stage5"]


class ITPNImageProcessingTester(CenterCropImageProcessingTester):
    image_processing_classes_by_backend = {"pil": ITPNImageProcessor}


class ITPNImageProcessingTest(PilOnlyImageProcessingOverrides, ImageProcessingTestMixin, unittest.TestCase):
    image_processor_tester_class = ITPNImageProcessingTester


def test_the_testers_catch_an_uninitialised_parameter():
    """The suite must not pass by skipping: a model whose `_init_weights` forgets the layer scale fails."""
    from hf_unified_pretrain.models.itpn import modeling_itpn

    class ForgetfulITPNModel(ITPNModel):
        @torch.no_grad()
        def _init_weights(self, module):
            super()._init_weights(module)
            if isinstance(module, modeling_itpn.ITPNLayer) and module.layer_scale_1 is not None:
                module.layer_scale_1.data.fill_(float("nan"))

    class BrokenInitTest(VisionModelTestOverrides, ModelTesterMixin, unittest.TestCase):
        all_model_classes = (ForgetfulITPNModel,)

        def setUp(self):
            self.model_tester = ITPNModelTester(self, layer_scale_init_value=0.1)

    result = run_test_methods(BrokenInitTest, "test_can_init_all_missing_weights")
    assert len(result.failures) + len(result.errors) == 1 and not result.skipped
