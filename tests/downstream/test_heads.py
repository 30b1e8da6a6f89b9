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


def _backbone_folders():
    from tests.registry_helpers import method_params

    return method_params("backbone", "test_preset")


@pytest.mark.parametrize("entry", _backbone_folders())
@pytest.mark.parametrize("head", ["upernet", "mask2former"])
def test_heads_needing_three_maps_name_the_out_features_to_pass(entry, head, tmp_path):
    import ast
    import re

    from hf_unified_pretrain.downstream import min_feature_maps

    torch.manual_seed(0)
    config = entry.load("config").from_preset(entry.test_preset)
    backbone = entry.load("backbone")(config)
    backbone.save_pretrained(tmp_path)
    assert len(backbone.out_features) < min_feature_maps(head, TINY_HEAD_KWARGS[head]) == 3
    # The documented default out_features used to crash inside transformers (UperNet: a bare IndexError).
    with pytest.raises(ValueError, match=rf"'{head}' head needs at least 3 backbone feature maps") as error:
        build_head_model(head, tmp_path, **TINY_HEAD_KWARGS[head])
    suggested = ast.literal_eval(re.search(r"e\.g\. out_features=(\[.*?\])", str(error.value)).group(1))
    assert len(suggested) == 3 and set(suggested) <= set(config.stage_names)

    model = build_head_model(head, tmp_path, out_features=suggested, **TINY_HEAD_KWARGS[head]).eval()
    size = config.image_size if isinstance(config.image_size, int) else config.image_size[0]
    with torch.no_grad():
        output = model(pixel_values=torch.randn(1, 3, size, size))
    logits = output.logits if head == "upernet" else output.masks_queries_logits
    assert torch.isfinite(logits).all()


def test_upernet_without_its_auxiliary_head_takes_one_map(pretrained_dir):
    kwargs = {**TINY_HEAD_KWARGS["upernet"], "use_auxiliary_head": False}
    with torch.no_grad():
        model = build_head_model("upernet", pretrained_dir, out_features=["stage4"], **kwargs).eval()
        assert model(pixel_values=torch.randn(1, 3, 64, 64)).logits.shape == (1, 3, 64, 64)


@pytest.mark.parametrize("head", ["detr", "deformable_detr"])
def test_amdim_backbone_runs_under_detr_frozen_batch_norms(head, tmp_path):
    # DETR heads replace every nn.BatchNorm2d of the backbone by a frozen copy, which takes no view count.
    from hf_unified_pretrain.models.amdim import AMDIMBackbone, AMDIMConfig

    torch.manual_seed(0)
    config = AMDIMConfig.from_preset("tiny", out_features=["stage2", "stage3"])
    AMDIMBackbone(config).save_pretrained(tmp_path)
    reference = AMDIMBackbone.from_pretrained(tmp_path).eval()
    model = build_head_model(head, tmp_path, out_features=["stage2", "stage3"], **TINY_HEAD_KWARGS[head]).eval()
    pixels = torch.randn(2, 3, config.image_size, config.image_size)
    with torch.no_grad():
        outputs = model(pixel_values=pixels)
        expected = reference(pixels).feature_maps
        backbone = next(m for m in model.modules() if isinstance(m, AMDIMBackbone))
        got = backbone(pixels).feature_maps
    assert outputs.pred_boxes.shape == (2, TINY_HEAD_KWARGS[head]["num_queries"], 4)
    assert torch.isfinite(outputs.logits).all()
    # Frozen batch norms compute what eval-mode batch norms do.
    for actual, wanted in zip(got, expected):
        torch.testing.assert_close(actual, wanted)
