"""transformers' common testers (ModelTesterMixin, ConfigTester) on MVPModel and MVPForPreTraining, default layout
(shared relative position bias, mean pooling, layer-scale). Heads: test_modeling_mvp_heads.py; the other BEiT layout:
test_modeling_mvp_layouts.py. Harness: tests/hf_testers.py."""

from __future__ import annotations

import unittest

import torch

from hf_unified_pretrain.models.mvp import MVPForPreTraining, MVPModel
from hf_unified_pretrain.models.mvp.modeling_mvp import MVPEmbeddings
from tests.hf_testers import ModelTesterMixin, VisionModelTestOverrides, run_test_methods

from .mvp_model_tester import MVPModelTestBase, MVPModelTester


class MVPModelTest(MVPModelTestBase, unittest.TestCase):
    all_model_classes = (MVPModel, MVPForPreTraining)

    def test_config(self):
        self.config_tester.run_common_tests()

    def test_model(self):
        self.model_tester.create_and_check_model(*self.model_tester.prepare_config_and_inputs())

    def test_for_pretraining(self):
        self.model_tester.create_and_check_for_pretraining(*self.model_tester.prepare_config_and_inputs())


def test_the_testers_catch_an_uninitialised_parameter():
    """The suite must not pass by skipping: a model whose `_init_weights` forgets the [MASK] token fails."""

    class ForgetfulMVPModel(MVPModel):
        @torch.no_grad()
        def _init_weights(self, module):
            super()._init_weights(module)
            if isinstance(module, MVPEmbeddings):
                module.mask_token.data.fill_(float("nan"))

    class BrokenInitTest(VisionModelTestOverrides, ModelTesterMixin, unittest.TestCase):
        all_model_classes = (ForgetfulMVPModel,)

        def setUp(self):
            self.model_tester = MVPModelTester(self)

    result = run_test_methods(BrokenInitTest, "test_can_init_all_missing_weights")
    assert len(result.failures) + len(result.errors) == 1 and not result.skipped
