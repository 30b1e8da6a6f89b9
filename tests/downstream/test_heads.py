"""The one-call head builder loads pretrained backbone weights into every supported head (checked on an in-tree
backbone here; each method's tests run it on its own backbone)."""

import pytest
import torch
from transformers import ConvNextBackbone, ConvNextConfig, ConvNextModel

from hf_unified_pretrain.downstream import build_head_model, load_pretrained_backbone

from .tiny_heads import TINY_HEAD_KWARGS

OUT_FEATURES = {
    "upernet": ["stage1", "stage2", "stage3", "stage4"],
    "mask2former": ["stage1", "stage2", "stage3", "stage4"],
    "detr": ["stage4"],
    "deformable_detr": ["stage2", "stage3", "stage4"],
}


@pytest.fixture(scope="module")
def pretrained_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("convnext")
    config = ConvNextConfig(
        hidden_sizes=[32, 32, 64, 64],
        depths=[1, 1, 1, 1],
        num_channels=3,
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )
    ConvNextBackbone(config).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("head", sorted(TINY_HEAD_KWARGS))
def test_head_gets_pretrained_backbone_weights(head, pretrained_dir):
    model = build_head_model(head, pretrained_dir, out_features=OUT_FEATURES[head], **TINY_HEAD_KWARGS[head])
    pretrained = ConvNextBackbone.from_pretrained(pretrained_dir).state_dict()
    backbone_state = next(m for n, m in model.named_modules() if type(m).__name__ == "ConvNextBackbone").state_dict()
    for key, value in backbone_state.items():
        torch.testing.assert_close(value, pretrained[key], rtol=0, atol=0)


def test_unknown_head_is_a_clear_error(pretrained_dir):
    with pytest.raises(ValueError, match="Unknown head 'maskrcnn'"):
        build_head_model("maskrcnn", pretrained_dir)


@pytest.mark.parametrize("head", ["upernet", "detr"])
def test_missing_or_wrong_folder_is_a_clear_error(head, tmp_path, pretrained_dir):
    with pytest.raises(FileNotFoundError, match=r"Pretrained folder '.*nowhere' does not exist.*save_pretrained"):
        build_head_model(head, tmp_path / "nowhere", **TINY_HEAD_KWARGS[head])
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        build_head_model(head, tmp_path / "empty", **TINY_HEAD_KWARGS[head])
    model = build_head_model(head, pretrained_dir, out_features=OUT_FEATURES[head], **TINY_HEAD_KWARGS[head])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_pretrained_backbone(model, tmp_path / "nowhere")


def test_load_into_head_without_backbone_is_a_clear_error(pretrained_dir):
    with pytest.raises(ValueError, match="no transformers backbone"):
        load_pretrained_backbone(torch.nn.Linear(2, 2), pretrained_dir)


def test_missing_backbone_weights_are_an_error_unless_allowed(tmp_path):
    # ConvNextModel checkpoints lack the backbone's per-stage norms.
    ConvNextModel(ConvNextConfig(hidden_sizes=[32, 32, 64, 64], depths=[1, 1, 1, 1])).save_pretrained(tmp_path)
    with pytest.raises(KeyError, match="lacks backbone weights.*hidden_states_norms"):
        build_head_model("upernet", tmp_path, out_features=OUT_FEATURES["upernet"], **TINY_HEAD_KWARGS["upernet"])
    model = build_head_model(
        "upernet", tmp_path, out_features=OUT_FEATURES["upernet"], allow_missing=True, **TINY_HEAD_KWARGS["upernet"]
    )
    assert model.backbone.encoder.stages[0].layers[0].dwconv.weight.abs().sum() > 0
