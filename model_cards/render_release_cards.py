"""Renders the cards of every registered method's released sizes into model_cards/<name>/README.md (run again after
changing the template, a preset or a registry entry): `python model_cards/render_release_cards.py [name ...]`.

The releases, their results and notes live in the method registry (`MethodEntry.releases`). Models are built on the
meta device (no weights). The numbers in the cards are the original authors', for the original weights; converted
checkpoints reproduce the original outputs (parity tests, atol 1e-5), but the numbers were not re-measured here, and
each card says so.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from hf_unified_pretrain.cards import render_model_card, save_model_card
from hf_unified_pretrain.models.registry import METHODS, MethodEntry, Release

HERE = Path(__file__).resolve().parent
HUB_ORG = "hf-unified-pretrain"


def releases() -> dict[str, tuple[MethodEntry, Release]]:
    """`{release name: (method entry, release)}` over every registered method."""
    return {release.name: (entry, release) for entry in METHODS.values() for release in entry.releases}


def render(name: str, output_root: Path = HERE) -> Path:
    """Writes `output_root/<name>/README.md` for one release and returns its path."""
    entry, release = releases()[name]
    config = entry.load("config").from_preset(release.preset)
    with torch.device("meta"):
        model = entry.load(release.role)(config)
    card = render_model_card(
        model,
        method=entry.name,
        size=release.size,
        results=dict(release.results),
        model_id=f"{HUB_ORG}/{release.name}",
        datasets=["imagenet-1k"],
        extra_limitations=list(release.notes),
        teacher=release.teacher,
    )
    return save_model_card(card, output_root / release.name)


if __name__ == "__main__":
    for release_name in sys.argv[1:] or releases():
        print(render(release_name))
