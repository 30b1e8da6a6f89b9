"""MVP in the transformers ecosystem: Auto round trips, the backbone inside UperNet / DETR / DPT, image processor."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import (
    AutoBackbone,
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForImageClassification,
    AutoModelForPreTraining,
    DPTConfig,
    DPTForDepthEstimation,
    UperNetForSemanticSegmentation,
)

import hf_unified_pretrain  # noqa: F401  (registers the Auto classes)
from hf_unified_pretrain.downstream import build_head_model
from hf_unified_pretrain.models.mvp import (
    MVPBackbone,
    MVPConfig,
    MVPForImageClassification,
    MVPForPreTraining,
    MVPImageProcessor,
    MVPModel,
)

from .helpers import BATCH, fixed_mask, pixels, teacher_features, tiny_config

FOUR_STAGES = ["stage1", "stage2", "stage3", "stage4"]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A 4-block pre-training checkpoint (random weights, layer-scale 1 so that every block matters)."""
    folder = tmp_path_factory.mktemp("mvp_pretrained")
    torch.manual_seed(0)
    model = MVPForPreTraining(tiny_config(num_hidden_layers=4, layer_scale_init_value=1.0)).eval()
    model.save_pretrained(folder)
    MVPImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder, model


def test_auto_classes_round_trip(pretrained):
    folder, model = pretrained
    assert isinstance(AutoConfig.from_pretrained(folder), MVPConfig)
    with torch.no_grad():
        encoder_out = model.mvp(pixels()).last_hidden_state
        reference = model(pixels(), bool_masked_pos=fixed_mask(), teacher_features=teacher_features()).loss

        reloaded = AutoModelForPreTraining.from_pretrained(folder).eval()
        assert isinstance(reloaded, MVPForPreTraining)
        loss = reloaded(pixels(), bool_masked_pos=fixed_mask(), teacher_features=teacher_features()).loss
        torch.testing.assert_close(loss, reference, rtol=0, atol=0)

        base = AutoModel.from_pretrained(folder).eval()
        assert isinstance(base, MVPModel)
        torch.testing.assert_close(base(pixels()).last_hidden_state, encoder_out, rtol=0, atol=0)

        classifier = AutoModelForImageClassification.from_pretrained(folder, num_labels=4).eval()
        assert isinstance(classifier, MVPForImageClassification)
        assert classifier(pixels()).logits.shape == (BATCH, 4)
        torch.testing.assert_close(classifier.mvp(pixels()).last_hidden_state, encoder_out, rtol=0, atol=0)


def test_classifier_and_backbone_round_trip_through_their_own_folders(pretrained, tmp_path):
    folder, model = pretrained
    classifier = AutoModelForImageClassification.from_pretrained(folder, num_labels=3).eval()
    classifier.save_pretrained(tmp_path / "cls")
    again = AutoModelForImageClassification.from_pretrained(tmp_path / "cls").eval()
    labels = torch.tensor([0, 2])
    with torch.no_grad():
        first, second = classifier(pixels(), labels=labels), again(pixels(), labels=labels)
    torch.testing.assert_close(second.logits, first.logits, rtol=0, atol=0)
    torch.testing.assert_close(second.loss, first.loss, rtol=0, atol=0)

    # AutoBackbone.from_pretrained(<local dir>) is broken in transformers 5.23 (Hub lookup): use the class itself.
    backbone = MVPBackbone.from_pretrained(folder, out_features=FOUR_STAGES).eval()
    backbone.save_pretrained(tmp_path / "backbone")
    backbone = MVPBackbone.from_pretrained(tmp_path / "backbone").eval()
    assert backbone.out_features == FOUR_STAGES and backbone.channels == [32] * 4
    with torch.no_grad():
        hidden = model.mvp(pixels(), output_hidden_states=True).hidden_states
        maps = backbone(pixels()).feature_maps
    assert len(maps) == 4
    for feature_map, tokens in zip(maps, hidden[1:]):
        assert feature_map.shape == (BATCH, 32, 4, 4)
        torch.testing.assert_close(feature_map, tokens[:, 1:].transpose(1, 2).reshape(BATCH, 32, 4, 4))
    assert isinstance(AutoBackbone.from_config(tiny_config()), MVPBackbone)


def test_image_processor_round_trip(pretrained):
    folder, _ = pretrained
    processor = AutoImageProcessor.from_pretrained(folder)
    assert isinstance(processor, MVPImageProcessor)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (50, 40, 3), dtype=np.uint8))
    batch = processor(images=[image, image], return_tensors="pt")
    assert batch["pixel_values"].shape == (2, 3, 32, 32)
    default = MVPImageProcessor()
    assert default.size == {"height": 224, "width": 224}
    np.testing.assert_allclose(default.image_mean, [0.485, 0.456, 0.406])


def _backbone_weights_match(head_model, folder) -> None:
    source = MVPBackbone.from_pretrained(folder).state_dict()
    backbone = next(module for module in head_model.modules() if isinstance(module, MVPBackbone))
    for key, value in backbone.state_dict().items():
        torch.testing.assert_close(value, source[key], rtol=0, atol=0)


def test_backbone_in_upernet_forward_backward_and_round_trip(pretrained, tmp_path):
    folder, _ = pretrained
    model = build_head_model(
        "upernet", folder, out_features=FOUR_STAGES, hidden_size=16, auxiliary_channels=8, num_labels=3
    )
    _backbone_weights_match(model, folder)
    labels = torch.randint(0, 3, (BATCH, 32, 32), generator=torch.Generator().manual_seed(0))
    out = model(pixels(), labels=labels)
    assert out.logits.shape == (BATCH, 3, 32, 32)
    out.loss.backward()
    backbone = model.backbone
    assert backbone.mvp.embeddings.patch_embeddings.projection.weight.grad.abs().sum() > 0
    assert backbone.mvp.layers[3].mlp.fc2.weight.grad.abs().sum() > 0

    model.eval().save_pretrained(tmp_path)
    reloaded = UperNetForSemanticSegmentation.from_pretrained(tmp_path).eval()
    assert isinstance(reloaded.backbone, MVPBackbone)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(pixels()).logits, model(pixels()).logits, rtol=0, atol=0)


def test_backbone_in_detr_forward_backward(pretrained):
    folder, _ = pretrained
    model = build_head_model(
        "detr",
        folder,
        out_features=["stage4"],
        d_model=32,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        num_queries=5,
        num_labels=3,
    )
    _backbone_weights_match(model, folder)
    labels = [
        {"class_labels": torch.tensor([1]), "boxes": torch.tensor([[0.5, 0.5, 0.4, 0.4]])},
        {"class_labels": torch.tensor([0, 2]), "boxes": torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.7, 0.6, 0.3, 0.4]])},
    ]
    out = model(pixels(), labels=labels)
    assert out.logits.shape == (BATCH, 5, 4) and out.pred_boxes.shape == (BATCH, 5, 4)
    out.loss.backward()
    backbone = next(module for module in model.modules() if isinstance(module, MVPBackbone))
    assert backbone.mvp.layers[3].attention.q_proj.weight.grad.abs().sum() > 0


def test_token_backbone_in_dpt_forward_backward():
    backbone_config = tiny_config(num_hidden_layers=4, out_indices=[1, 2, 3, 4], reshape_hidden_states=False)
    config = DPTConfig(
        backbone_config=backbone_config,
        neck_hidden_sizes=[8, 16, 32, 64],
        fusion_hidden_size=16,
        head_hidden_size=8,
        reassemble_factors=[4, 2, 1, 0.5],
    )
    model = DPTForDepthEstimation(config)
    assert isinstance(model.backbone, MVPBackbone)
    with torch.no_grad():
        tokens = model.backbone(pixels()).feature_maps
    assert [t.shape for t in tokens] == [(BATCH, 17, 32)] * 4
    depth = model(pixels()).predicted_depth
    assert depth.shape == (BATCH, 64, 64)  # DPT's head upsamples twice the input resolution
    # DPT has no training loss in transformers 5.23 (it raises on `labels`): a plain L1 to a random depth map
    target = torch.rand(depth.shape, generator=torch.Generator().manual_seed(0))
    (depth - target).abs().mean().backward()
    assert model.backbone.mvp.layers[0].attention.v_proj.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("model_class", [MVPForImageClassification, MVPBackbone])
def test_heads_that_never_mask_load_pretraining_weights_and_train_every_parameter(pretrained, model_class):
    folder, _ = pretrained
    model, info = model_class.from_pretrained(folder, output_loading_info=True, num_labels=3)
    assert info["unexpected_keys"] == set() and info["mismatched_keys"] == set()
    assert model.mvp.embeddings.mask_token is None  # no parameter without gradient (DDP, optimiser)
    model.train()
    if model_class is MVPForImageClassification:
        loss = model(pixels(), labels=torch.tensor([0, 2])).loss
    else:
        loss = sum(feature_map.square().mean() for feature_map in model(pixels()).feature_maps)
    loss.backward()
    assert [name for name, p in model.named_parameters() if p.grad is None or not p.grad.any()] == []


def test_backbone_keeps_no_final_norm_of_the_cls_path():
    backbone = MVPBackbone(tiny_config(use_mean_pooling=False, out_indices=[1, 2]))
    assert not any("layernorm." in name and "layers." not in name for name, _ in backbone.named_parameters())
    sum(feature_map.sum() for feature_map in backbone(pixels()).feature_maps).backward()
    assert [name for name, p in backbone.named_parameters() if p.grad is None] == []
