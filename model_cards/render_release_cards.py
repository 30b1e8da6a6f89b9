"""Renders the cards of the released sizes into model_cards/<name>/README.md (run again after changing the
template or a preset): `python model_cards/render_release_cards.py`.

Models are built on the meta device (no weights). The numbers in the cards are the original authors', for the
original weights; converted checkpoints reproduce the original outputs (parity tests, atol 1e-5), but the numbers
were not re-measured here, and each card says so.
"""

from __future__ import annotations

from pathlib import Path

import torch

import hf_unified_pretrain  # noqa: F401
from hf_unified_pretrain.cards import render_model_card, save_model_card
from hf_unified_pretrain.models.itpn import ITPNConfig, ITPNForPreTraining
from hf_unified_pretrain.models.mvp import MVPConfig, MVPForPreTraining

HERE = Path(__file__).resolve().parent
HUB_ORG = "hf-unified-pretrain"
REPORTED = "reported by the original authors for the original weights; not re-measured here"

ITPN_NOTE = [
    "The original iTPN repository states no licence: check the terms of the original weights before redistribution.",
    "Detection numbers come from Mask R-CNN, which transformers does not have; with `build_head_model` the backbone "
    "plugs into UperNet, Mask2Former, DETR and Deformable-DETR instead.",
]

RELEASES = {
    "itpn-base-pixel": ("itpn", ITPNConfig, ITPNForPreTraining, "base (pixel target)", {
        "ImageNet-1k fine-tune top-1 (400 / 1600 ep)": f"85.1 / 85.5 ({REPORTED})",
        "COCO Mask R-CNN 1x box / mask AP": f"53.0 / 46.5 ({REPORTED})",
        "ADE20K UperNet mIoU": f"53.5 ({REPORTED})",
    }, ITPN_NOTE),
    "itpn-base-clip": ("itpn", ITPNConfig, ITPNForPreTraining, "base (CLIP-B/16 target)", {
        "ImageNet-1k fine-tune top-1 (300 / 800 ep)": f"85.9 / 86.2 ({REPORTED})",
        "COCO Mask R-CNN 1x box / mask AP": f"53.2 / 46.6 ({REPORTED})",
        "ADE20K UperNet mIoU": f"54.7 ({REPORTED})",
    }, ITPN_NOTE),
    "itpn-large-pixel": ("itpn", ITPNConfig, ITPNForPreTraining, "large (pixel target)", {
        "ImageNet-1k fine-tune top-1 (400 / 1600 ep)": f"86.3 / 86.7 ({REPORTED})",
        "COCO Mask R-CNN 1x box / mask AP": f"55.6 / 48.6 ({REPORTED})",
        "ADE20K UperNet mIoU": f"56.1 ({REPORTED})",
    }, ITPN_NOTE),
    "itpn-large-clip": ("itpn", ITPNConfig, ITPNForPreTraining, "large (CLIP-L/14 target)", {
        "ImageNet-1k fine-tune top-1": f"87.8 ({REPORTED})",
        "COCO Mask R-CNN 1x box / mask AP": f"55.2 / 48.2 ({REPORTED})",
        "ADE20K UperNet mIoU": f"57.7 ({REPORTED})",
    }, ITPN_NOTE),
    "fast-itpn-tiny": ("itpn", ITPNConfig, None, "Fast-iTPN tiny", {
        "ImageNet-1k fine-tune top-1 (224 px)": f"85.1 ({REPORTED})"}, ITPN_NOTE),
    "fast-itpn-small": ("itpn", ITPNConfig, None, "Fast-iTPN small", {
        "ImageNet-1k fine-tune top-1 (224 px)": f"86.4 ({REPORTED})"}, ITPN_NOTE),
    "fast-itpn-base": ("itpn", ITPNConfig, None, "Fast-iTPN base", {
        "ImageNet-1k fine-tune top-1 (224 px)": f"87.4 ({REPORTED})"}, ITPN_NOTE),
    "fast-itpn-large": ("itpn", ITPNConfig, None, "Fast-iTPN large", {
        "ImageNet-1k fine-tune top-1 (640 px)": f"89.5 ({REPORTED})"}, ITPN_NOTE),
    "mvp-base": ("mvp", MVPConfig, MVPForPreTraining, "base (ViT-B/16, CLIP-B/16 teacher)", {
        "ImageNet-1k fine-tune top-1": f"84.4 ({REPORTED})",
        "COCO Cascade Mask R-CNN 3x box / mask AP": f"53.5 / 46.3 ({REPORTED})",
        "ADE20K UperNet mIoU": f"52.4 ({REPORTED})",
    }, ["MVP's authors released neither code nor weights: this card describes our implementation (target and loss "
        "chosen as the README explains); train it with training_scripts/run_mvp.py."]),
    "mvp-large": ("mvp", MVPConfig, MVPForPreTraining, "large (ViT-L/16, CLIP-B/16 teacher)", {
        "ImageNet-1k fine-tune top-1": f"86.3 ({REPORTED})",
    }, ["MVP's authors released neither code nor weights: this card describes our implementation."]),
}


def render(name: str) -> Path:
    method, config_class, model_class, size, results, notes = RELEASES[name]
    preset = name.removeprefix("mvp-") if method == "mvp" else name
    config = config_class.from_preset(preset)
    if model_class is None:  # Fast-iTPN releases are classifiers/backbones without a pyramid
        from transformers import AutoModel

        model_class = AutoModel._model_mapping[type(config)]
    with torch.device("meta"):
        model = model_class(config)
    card = render_model_card(
        model,
        method=method,
        size=size,
        results=results,
        model_id=f"{HUB_ORG}/{name}",
        license="other" if method == "itpn" else "apache-2.0",
        datasets=["imagenet-1k"],
        extra_limitations=notes,
        teacher="openai/clip-vit-base-patch16 (vision tower)" if method == "mvp" or "clip" in name else None,
    )
    return save_model_card(card, HERE / name)


if __name__ == "__main__":
    for release in RELEASES:
        print(render(release))
