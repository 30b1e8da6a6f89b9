"""Model cards: Hub metadata, sections, assets, and code snippets that really run against the saved checkpoint."""

import re

import pytest
import torch
from huggingface_hub import ModelCard
from PIL import Image

import hf_unified_pretrain  # noqa: F401  (registers the Auto classes)
from hf_unified_pretrain.cards import render_model_card, save_model_card
from hf_unified_pretrain.models.mvp import MVPBackbone, MVPConfig, MVPForPreTraining, MVPImageProcessor, MVPModel
from hf_unified_pretrain.models.registry import METHODS

SECTIONS = [
    "## Model description",
    "## Intended uses & limitations",
    "## How to load it",
    "## Plugging the backbone into a detection or segmentation head",
    "## Training recipe",
    "### Loss curve",
    "## Results",
    "## Citation",
]


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    following = text.find("\n## ", start + len(heading))
    return text[start : following if following != -1 else len(text)]


@pytest.fixture
def checkpoint(tmp_path):
    """A tiny MVP pre-training checkpoint with its image processor, as `save_pretrained` writes it."""
    folder = tmp_path / "mvp-tiny"
    config = MVPConfig.from_preset("tiny", teacher_name_or_path="clip-teacher-folder")
    MVPForPreTraining(config).save_pretrained(folder)
    MVPImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


@pytest.fixture
def loss_curve(tmp_path):
    path = tmp_path / "plots" / "train_loss.png"
    path.parent.mkdir()
    Image.new("RGB", (40, 20), (10, 200, 30)).save(path)
    return path


def _full_card(checkpoint, loss_curve):
    return render_model_card(
        checkpoint,
        method="mvp",
        size="tiny",
        training_recipe={"epochs": 2, "learning rate": 1.5e-3, "masking": "block-wise, 6 of 16 patches"},
        results={
            "linear-probe top-1": {
                "value": 41.25,
                "dataset": "cifar10",
                "split": "test",
                "task": "image-classification",
                "metric": "accuracy",
            },
            "final train loss": 0.4321,
        },
        loss_curve=loss_curve,
        base_model="org/mvp-base",
        license="cc-by-nc-4.0",
        datasets=["cifar10"],
    )


def test_front_matter_sections_and_assets(checkpoint, loss_curve, tmp_path):
    card = _full_card(checkpoint, loss_curve)
    out = tmp_path / "published"
    readme = save_model_card(card, out)
    assert readme == out / "README.md"
    assert (out / "loss_curve.png").read_bytes() == loss_curve.read_bytes()

    data = ModelCard.load(readme).data.to_dict()
    assert data["library_name"] == "transformers"
    assert data["pipeline_tag"] == "image-feature-extraction"
    assert data["license"] == "cc-by-nc-4.0"
    assert data["datasets"] == ["cifar10"]
    assert data["base_model"] == "org/mvp-base"
    assert {"vision", "self-supervised", "mvp", "backbone"} <= set(data["tags"])
    (index,) = data["model-index"]
    (result,) = index["results"]  # only the result tied to a dataset and task goes into model-index
    assert result["task"]["type"] == "image-classification"
    assert result["dataset"] == {"name": "cifar10", "type": "cifar10", "split": "test"}
    assert result["metrics"] == [{"type": "accuracy", "value": 41.25, "name": "linear-probe top-1"}]

    text = readme.read_text()
    positions = [text.index(heading) for heading in SECTIONS]
    assert positions == sorted(positions)
    assert "](loss_curve.png)" in text
    recipe = _section(text, "## Training recipe")
    assert "| learning rate | 0.0015 |" in recipe and "| masking | block-wise, 6 of 16 patches |" in recipe
    results = _section(text, "## Results")
    assert "| linear-probe top-1 | 41.25 | cifar10 | test |" in results
    assert "| final train loss | 0.4321 |  |  |" in results
    description = _section(text, "## Model description")
    assert "https://arxiv.org/abs/2203.05175" in description
    assert "`MVPForPreTraining`" in description and "`MVPBackbone`" in description
    num_parameters = sum(p.numel() for p in MVPModel(MVPConfig.from_preset("tiny")).parameters())
    assert f"({num_parameters:,})" in description
    assert "| Teacher (pre-training only) | `clip-teacher-folder` |" in description  # from the config
    assert "| Initialised from | `org/mvp-base` |" in description
    assert METHODS["mvp"].card.citation in _section(text, "## Citation")


def test_load_snippet_runs_and_returns_the_models_features(checkpoint, loss_curve):
    text = str(_full_card(checkpoint, loss_curve))
    (snippet,) = _python_blocks(_section(text, "## How to load it"))
    assert "import hf_unified_pretrain" in snippet and "AutoModel.from_pretrained" in snippet
    namespace: dict = {}
    exec(compile(snippet, "model_card_load_snippet", "exec"), namespace)  # noqa: S102 (the point of the test)

    image = Image.new("RGB", (32, 32), (124, 116, 104))
    pixel_values = MVPImageProcessor.from_pretrained(checkpoint)(images=image, return_tensors="pt").pixel_values
    with torch.no_grad():
        expected = MVPModel.from_pretrained(checkpoint).eval()(pixel_values).last_hidden_state
    assert isinstance(namespace["model"], MVPModel)
    torch.testing.assert_close(namespace["features"], expected, rtol=0, atol=0)


def test_head_snippet_builds_upernet_with_the_pretrained_backbone_weights(checkpoint, loss_curve):
    text = str(_full_card(checkpoint, loss_curve))
    (snippet,) = _python_blocks(_section(text, "## Plugging the backbone"))
    namespace: dict = {}
    exec(compile(snippet, "model_card_head_snippet", "exec"), namespace)  # noqa: S102 (the point of the test)
    head_model = namespace["model"]
    assert type(head_model).__name__ == "UperNetForSemanticSegmentation"
    assert isinstance(head_model.backbone, MVPBackbone)
    assert head_model.backbone.out_indices == [1, 2]  # both blocks of the 2-layer tiny model

    pretrained = MVPBackbone.from_pretrained(checkpoint).state_dict()
    copied = head_model.backbone.state_dict()
    assert copied.keys() == pretrained.keys()
    for key in copied:
        torch.testing.assert_close(copied[key], pretrained[key], rtol=0, atol=0)
    with torch.no_grad():
        logits = head_model.eval()(torch.randn(1, 3, 32, 32)).logits
    assert logits.shape == (1, 150, 32, 32)


def test_minimal_card_from_a_model_object(tmp_path):
    model = MVPModel(MVPConfig.from_preset("tiny"))
    folder = tmp_path / "bare"
    model.save_pretrained(folder)  # no image processor saved: the snippet feeds a random tensor
    card = render_model_card(
        MVPModel.from_pretrained(folder), method="mvp", size="tiny", model_id=str(folder), head_out_indices=[0, 1, 2]
    )
    text = str(card)
    (head_snippet,) = _python_blocks(_section(text, "## Plugging the backbone"))
    assert "out_indices=[0, 1, 2]" in head_snippet and "use_auxiliary_head" not in head_snippet
    assert card.data.license == "apache-2.0" and card.data.datasets is None and card.data.base_model is None
    assert "Not recorded for this checkpoint." in text
    assert "No evaluation results reported" in text
    assert "### Loss curve" not in text and "Teacher (pre-training only)" not in text
    assert "model-index" not in str(card.data.to_dict())
    (snippet,) = _python_blocks(_section(text, "## How to load it"))
    assert "AutoImageProcessor" not in snippet
    namespace: dict = {}
    exec(compile(snippet, "model_card_load_snippet", "exec"), namespace)  # noqa: S102 (the point of the test)
    assert namespace["features"].shape == (1, 17, 32)  # [CLS] + 4x4 patches, hidden 32


def test_bad_arguments_are_explained(checkpoint, tmp_path):
    with pytest.raises(ValueError, match="Unknown method 'mae'"):
        render_model_card(checkpoint, method="mae", size="base")
    with pytest.raises(FileNotFoundError, match="missing.png"):
        render_model_card(checkpoint, method="mvp", size="tiny", loss_curve=tmp_path / "missing.png")
    with pytest.raises(FileNotFoundError, match="no config.json"):
        render_model_card(tmp_path, method="mvp", size="tiny")
    with pytest.raises(ValueError, match="has no 'value'"):
        render_model_card(checkpoint, method="mvp", size="tiny", results={"top-1": {"dataset": "x"}})


def _release_cards_module():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "model_cards" / "render_release_cards.py"
    spec = importlib.util.spec_from_file_location("render_release_cards", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_release_cards_come_from_the_registry_and_match_the_committed_files(tmp_path):
    """Every registry release renders to exactly the committed model_cards/<name>/README.md (regenerate otherwise)."""
    render_release_cards = _release_cards_module()
    expected = {release.name for entry in METHODS.values() for release in entry.releases}
    assert set(render_release_cards.releases()) == expected and expected
    for name in sorted(expected):
        written = render_release_cards.render(name, tmp_path)
        committed = render_release_cards.HERE / name / "README.md"
        assert written.read_text() == committed.read_text(), f"{name}: run python model_cards/render_release_cards.py"
        entry, _ = render_release_cards.releases()[name]
        metadata = ModelCard.load(written).data.to_dict()
        assert metadata["license"] == entry.card.license
