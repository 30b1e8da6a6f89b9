"""Our backbones inside transformers heads: forward, backward, save/load round trip, pretrained weights loaded.

iTPN: UperNet and Mask2Former on the segmentation layout (strides 4-32, concat(pyramid, stage) channels), DETR and
Deformable-DETR on the detection layout (all fpn_dim channels, strides up to 64). MVP: UperNet and DETR.
"""

from __future__ import annotations

import pytest
import torch

import hf_unified_pretrain  # noqa: F401
from hf_unified_pretrain.downstream import build_head_model
from hf_unified_pretrain.models.itpn import ITPNConfig, ITPNForPreTraining
from hf_unified_pretrain.models.mvp import MVPConfig, MVPForPreTraining

from .tiny_heads import TINY_HEAD_KWARGS

SEG = ["stage1", "stage2", "stage3", "stage4"]
CASES = [
    ("itpn", "upernet", "seg", SEG),
    ("itpn", "mask2former", "seg", SEG),
    ("itpn", "detr", "det", ["stage5"]),
    ("itpn", "deformable_detr", "det", ["stage3", "stage4", "stage5"]),
    ("mvp", "upernet", None, ["stage1", "stage2", "stage3", "stage4"]),
    ("mvp", "detr", None, ["stage4"]),
]


def _pretrained_dir(tmp_path, method: str, layout: str | None):
    torch.manual_seed(0)
    if method == "itpn":
        config = ITPNConfig.from_preset(
            "itpn-tiny-test", image_size=64, hidden_size=128, fpn_dim=32, backbone_layout=layout
        )
        model = ITPNForPreTraining(config)
    else:
        config = MVPConfig.from_preset("tiny", image_size=64, hidden_size=32, num_hidden_layers=4)
        model = MVPForPreTraining(config)
    model.save_pretrained(tmp_path / "pretrained")
    return tmp_path / "pretrained", model


def _labels(head: str, batch: int, size: int):
    generator = torch.Generator().manual_seed(1)
    if head == "upernet":
        return {"labels": torch.randint(0, 3, (batch, size, size), generator=generator)}
    if head == "mask2former":
        return {
            "mask_labels": [(torch.rand(2, size, size, generator=generator) > 0.5).float() for _ in range(batch)],
            "class_labels": [torch.tensor([0, 2]) for _ in range(batch)],
        }
    return {
        "labels": [
            {"class_labels": torch.tensor([1]), "boxes": torch.tensor([[0.5, 0.5, 0.3, 0.4]])} for _ in range(batch)
        ]
    }


def _logits(outputs) -> torch.Tensor:
    for name in ("logits", "class_queries_logits"):
        if getattr(outputs, name, None) is not None:
            return getattr(outputs, name)
    raise AssertionError("no logits")


@pytest.mark.parametrize("method,head,layout,out_features", CASES, ids=[f"{m}-{h}" for m, h, _, _ in CASES])
def test_backbone_in_head_trains_and_round_trips(tmp_path, method, head, layout, out_features):
    pretrained_dir, pretrained = _pretrained_dir(tmp_path, method, layout)
    model = build_head_model(head, pretrained_dir, out_features=out_features, **TINY_HEAD_KWARGS[head])
    backbone_name, backbone = next(
        (n, m)
        for n, m in model.named_modules()
        if type(m).__name__.endswith("Backbone") and type(m).__module__.startswith("hf_unified_pretrain")
    )
    source = pretrained.state_dict()  # same base-model prefix (itpn. / mvp.) as the backbone's keys
    for key, value in backbone.state_dict().items():
        torch.testing.assert_close(value, source[key], rtol=0, atol=0, msg=f"{backbone_name}.{key} not loaded")

    pixel_values = torch.randn(2, 3, 64, 64)
    model.train()
    outputs = model(pixel_values=pixel_values, **_labels(head, 2, 64))
    assert torch.isfinite(outputs.loss)
    outputs.loss.backward()
    trainable = [(n, p) for n, p in backbone.named_parameters() if p.requires_grad]
    without_grad = [n for n, p in trainable if p.grad is None]
    if layout == "det" and "stage1" not in out_features:
        # Coarse levels only: the stride-4/8 pyramid branches do not feed the head, everything else must learn.
        unused = (
            "itpn.pyramid.stride4",
            "itpn.pyramid.stride8",
            "itpn.pyramid.output_blocks.0.",
            "itpn.pyramid.output_blocks.1.",
        )
        without_grad = [n for n in without_grad if not n.startswith(unused)]
    assert trainable and not without_grad, without_grad

    model.eval()
    with torch.no_grad():
        expected = _logits(model(pixel_values=pixel_values))
    model.save_pretrained(tmp_path / "head")
    reloaded = type(model).from_pretrained(tmp_path / "head").eval()
    with torch.no_grad():
        torch.testing.assert_close(_logits(reloaded(pixel_values=pixel_values)), expected)


@pytest.mark.parametrize("method,layout,out_features", [("itpn", "det", ["stage5"]), ("mvp", None, ["stage4"])])
def test_detection_heads_accept_images_of_any_size(tmp_path, method, layout, out_features):
    """DETR feeds the backbone whatever size the batch has: the position tables follow unless told otherwise."""
    folder, _ = _pretrained_dir(tmp_path, method, layout)
    detector = build_head_model("detr", folder, out_features=out_features, **TINY_HEAD_KWARGS["detr"]).eval()
    assert detector.config.backbone_config.interpolate_pos_encoding is True
    with torch.no_grad():
        outputs = detector(pixel_values=torch.randn(1, 3, 96, 80))
    assert outputs.logits.shape == (1, 4, 4)

    strict = build_head_model(
        "detr",
        folder,
        out_features=out_features,
        backbone_overrides={"interpolate_pos_encoding": False},
        **TINY_HEAD_KWARGS["detr"],
    ).eval()
    with pytest.raises(ValueError, match="interpolate_pos_encoding"), torch.no_grad():
        strict(pixel_values=torch.randn(1, 3, 96, 80))
