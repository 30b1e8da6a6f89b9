"""The card says how each method's weights were trained, from the registry's `CardInfo`: `hf-unified-pretrain card`
on a tiny checkpoint of every method gives its own summary and supervision tags (InternImage supervised, M3I the
terms switched on in the checkpoint's config, the others self-supervised), and the saved class is the real one."""

from __future__ import annotations

import pytest
from huggingface_hub import ModelCard

from hf_unified_pretrain.cli import main as cli_main
from hf_unified_pretrain.models.registry import METHODS
from tests.registry_helpers import method_params

SELF_SUPERVISED = {"itpn", "mvp", "multimae", "amdim"}
SUPERVISION_TAGS = {"self-supervised", "supervised", "weakly-supervised", "multi-target"}


def _card(entry, tmp_path, role=None, **overrides):
    """Saves a tiny model of `entry` (its pre-training class when it has one) and renders its card with the CLI."""
    config = entry.load("config").from_preset(entry.test_preset, **overrides)
    role = role or ("pretraining" if entry.pretraining else "model")
    folder = tmp_path / entry.name
    entry.load(role)(config).save_pretrained(folder)
    cli_main(["card", str(folder), "--method", entry.name, "--size", "tiny"])
    card = ModelCard.load(folder / "README.md")
    summary = next(line for line in card.text.splitlines() if line.startswith("A tiny "))
    return card, summary


@pytest.mark.parametrize("entry", method_params("test_preset"))
def test_every_method_card_says_how_it_was_trained(entry, tmp_path):
    card, summary = _card(entry, tmp_path)
    tags = set(card.data.tags) & SUPERVISION_TAGS
    info = METHODS[entry.name].card
    assert summary.startswith(f"A tiny {info.name} model {info.training}, packaged as a transformers model")
    saved = entry.pretraining or entry.model
    assert f"saved as `{saved}`" in card.text
    if entry.name in SELF_SUPERVISED:
        assert info.training == "pre-trained with self-supervision" and tags == {"self-supervised"}
    elif entry.name == "internimage":
        assert "supervised image classification" in summary and "self-supervision" not in summary
        assert tags == {"supervised"}
    elif entry.name == "m3i":  # the tiny preset switches every term on
        assert "multi-input, multi-target" in summary and "self-supervision" not in summary
        assert summary.count("(self-supervised)") == 2
        assert "category labels (supervised)" in summary and "paired captions" in summary
        assert tags == {"multi-target", "self-supervised", "supervised", "weakly-supervised"}
        # M3I registers no classification head: the card must not promise AutoModelForImageClassification
        assert "AutoModelForImageClassification" not in card.text and "registers no classification head" in card.text
    else:
        pytest.fail(f"New method {entry.name!r}: add its expected card wording to this test.")


def test_m3i_card_lists_only_the_terms_switched_on(tmp_path):
    off = {"classification_loss_weight": 0.0, "image_text_loss_weight": 0.0, "inter_view_loss_weight": 0.0}
    card, summary = _card(METHODS["m3i"], tmp_path, **off)
    assert summary.endswith(
        "Objective terms of this checkpoint: the same view's dense features from an EMA teacher (self-supervised)."
    )
    assert set(card.data.tags) & SUPERVISION_TAGS == {"multi-target", "self-supervised"}


def test_classifier_card_is_not_called_a_bare_representation(tmp_path):
    card, _ = _card(METHODS["internimage"], tmp_path, role="classification")
    assert "saved as `InternImageForImageClassification`" in card.text
    assert "Image classification over the labels it was trained on" in card.text
    assert "not a classifier" not in card.text
