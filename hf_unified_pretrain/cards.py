"""Hub model cards for our checkpoints, rendered offline with huggingface_hub's `ModelCard` from
`hf_unified_pretrain/templates/model_card.md` (package data, so installed wheels render cards too).

```python
from hf_unified_pretrain.cards import render_model_card, save_model_card

card = render_model_card(
    "outputs/mvp-base", method="mvp", size="base",
    training_recipe={"epochs": 300, "batch size": 2048, "optimizer": "AdamW"},
    results={"top-1": {"value": 84.4, "dataset": "imagenet-1k", "split": "validation", "task": "image-classification"}},
    loss_curve="outputs/mvp-base/loss_curve.png", datasets=["imagenet-1k"], teacher="openai/clip-vit-base-patch16",
)
save_model_card(card, "outputs/mvp-base")   # README.md (+ the loss-curve image) in the folder
```

The card carries Hub metadata (library_name transformers, pipeline_tag image-feature-extraction, tags, license,
datasets, base_model, model-index for results tied to a dataset and task) and the sections: description, intended
uses & limitations, how to load it, how to plug the backbone into a head, training recipe, loss curve, results and
citation. Its code snippets are generated for the actual checkpoint (they are executed by tests/test_cards.py).
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from os import PathLike
from pathlib import Path

import torch
from huggingface_hub import EvalResult, ModelCard, ModelCardData
from transformers import (
    AutoBackbone,
    AutoConfig,
    AutoModel,
    AutoModelForImageClassification,
    AutoModelForPreTraining,
    PreTrainedConfig,
    PreTrainedModel,
)

from .models.registry import CardInfo, get_method

TEMPLATE_PATH = Path(__file__).resolve().parent / "templates" / "model_card.md"
LOSS_CURVE_NAME = "loss_curve.png"


def _format_count(count: int) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f}{unit} ({count:,})"
    return f"{count:,}"


def _format_value(value) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_format_value(item) for item in value)
    return str(value).replace("|", "\\|").replace("\n", " ")


def _resolve_model(model_dir_or_model) -> tuple[PreTrainedConfig, Path | None, str]:
    """Returns the config, the local folder (if any) and the default checkpoint reference for the snippets."""
    if isinstance(model_dir_or_model, PreTrainedModel):
        reference = model_dir_or_model.name_or_path or model_dir_or_model.config.model_type
        folder = Path(reference) if reference and Path(reference).is_dir() else None
        return model_dir_or_model.config, folder, reference
    folder = Path(model_dir_or_model)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder} is not a save_pretrained folder (no config.json).")
    return AutoConfig.from_pretrained(folder), folder, str(folder)


def _training_wording(info: CardInfo, config: PreTrainedConfig) -> tuple[str, list[str], list[str]]:
    """How the weights were trained: the summary phrase, the objective terms this config switches on (for methods
    listing optional terms in `CardInfo.objective_terms`) and the supervision tags (the terms' when any is on)."""
    terms = [(phrase, tag) for field, phrase, tag in info.objective_terms if getattr(config, field, 0) > 0]
    tags = [*info.supervision, *(tag for _, tag in terms)]
    return info.training, [phrase for phrase, _ in terms], list(dict.fromkeys(tags))


def _encoder_parameter_count(config: PreTrainedConfig) -> int:
    """Parameters of the bare encoder (the AutoModel class), counted on the meta device (no weights are loaded)."""
    with torch.device("meta"):
        model = AutoModel.from_config(config)
    return sum(parameter.numel() for parameter in model.parameters())


def _registered_class(auto_class, config: PreTrainedConfig) -> type | None:
    """The class `auto_class` resolves for this config type (registered or in-tree), or None."""
    try:
        return auto_class._model_mapping[type(config)]
    except (KeyError, ValueError):
        return None


def _public_import(cls: type) -> tuple[str, str]:
    """(module, class name), preferring the class' package when it re-exports the class."""
    module = cls.__module__
    package = module.rsplit(".", 1)[0]
    try:
        if getattr(__import__(package, fromlist=[cls.__name__]), cls.__name__, None) is cls:
            module = package
    except ImportError:
        pass
    return module, cls.__name__


def _head_out_indices(config: PreTrainedConfig) -> list[int]:
    """Four evenly spread stages (fewer for shallow models), the usual input of a UperNet / FPN neck."""
    num_stages = len(config.stage_names) - 1
    picks = {max(1, round(num_stages * fraction)) for fraction in (0.25, 0.5, 0.75, 1.0)}
    return sorted(picks)


def _image_size(config: PreTrainedConfig) -> tuple[int, int]:
    size = getattr(config, "image_size", 224)
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def _load_snippet(checkpoint: str, config: PreTrainedConfig, has_processor: bool) -> str:
    height, width = _image_size(config)
    lines = ["import torch", ""]
    if has_processor:
        lines += ["from PIL import Image", ""]
    lines += [
        "import hf_unified_pretrain  # noqa: F401  (registers the model types with the Auto classes)",
        "from transformers import " + ("AutoImageProcessor, AutoModel" if has_processor else "AutoModel"),
        "",
        f"checkpoint = {checkpoint!r}",
        "model = AutoModel.from_pretrained(checkpoint).eval()",
    ]
    if has_processor:
        lines += [
            "processor = AutoImageProcessor.from_pretrained(checkpoint)",
            "",
            f'image = Image.new("RGB", ({width}, {height}), (124, 116, 104))  # or Image.open("your_image.jpg").convert("RGB")',
            'inputs = processor(images=image, return_tensors="pt")',
        ]
    else:
        lines += ["", f'inputs = {{"pixel_values": torch.randn(1, {config.num_channels}, {height}, {width})}}']
    lines += [
        "with torch.no_grad():",
        "    outputs = model(**inputs)",
        "features = outputs.last_hidden_state  # encoder features of the image",
        "print(features.shape)",
    ]
    return "\n".join(lines)


def _head_snippet(checkpoint: str, config: PreTrainedConfig, out_indices: list[int] | None = None) -> str | None:
    backbone_class = _registered_class(AutoBackbone, config) if hasattr(config, "stage_names") else None
    if backbone_class is None:
        return None
    module, name = _public_import(backbone_class)
    out_indices = list(out_indices) if out_indices is not None else _head_out_indices(config)
    head_args = "backbone_config=backbone_config, num_labels=150"
    if len(out_indices) < 3:  # UperNet's auxiliary FCN head reads the third feature map
        head_args += ", use_auxiliary_head=False"
    return "\n".join(
        [
            "import hf_unified_pretrain  # noqa: F401",
            f"from {module} import {name}",
            "from transformers import AutoConfig, UperNetConfig, UperNetForSemanticSegmentation",
            "",
            f"checkpoint = {checkpoint!r}",
            f"backbone_config = AutoConfig.from_pretrained(checkpoint, out_indices={out_indices})",
            f"model = UperNetForSemanticSegmentation(UperNetConfig({head_args}))",
            "",
            "# the head's backbone starts from random weights: copy the pretrained ones in",
            f"pretrained = {name}.from_pretrained(checkpoint, config=backbone_config)",
            "model.backbone.load_state_dict(pretrained.state_dict())",
            "# fine-tune `model` on your segmentation data (e.g. with the transformers Trainer)",
        ]
    )


def _result_rows(results: Mapping | None) -> tuple[list[dict], list[EvalResult]]:
    """Table rows for every result; model-index entries for those that name a dataset and a task."""
    rows, eval_results = [], []
    for metric_name, spec in (results or {}).items():
        spec = dict(spec) if isinstance(spec, Mapping) else {"value": spec}
        if "value" not in spec:
            raise ValueError(f"Result {metric_name!r} has no 'value': {spec}")
        rows.append(
            {
                "name": _format_value(metric_name),
                "value": _format_value(spec["value"]),
                "dataset": _format_value(spec.get("dataset", "")),
                "split": _format_value(spec.get("split", "")),
            }
        )
        if spec.get("dataset") and spec.get("task"):
            eval_results.append(
                EvalResult(
                    task_type=spec["task"],
                    dataset_type=spec["dataset"],
                    dataset_name=spec.get("dataset_name", spec["dataset"]),
                    dataset_split=spec.get("split"),
                    metric_type=spec.get("metric", metric_name),
                    metric_name=metric_name,
                    metric_value=spec["value"],
                )
            )
    return rows, eval_results


def render_model_card(
    model_dir_or_model: str | PathLike | PreTrainedModel,
    *,
    method: str,
    size: str,
    training_recipe: Mapping | None = None,
    results: Mapping | None = None,
    loss_curve: str | PathLike | None = None,
    base_model: str | None = None,
    license: str | None = None,
    datasets: str | list[str] | None = None,
    teacher: str | None = None,
    model_id: str | None = None,
    extra_limitations: list[str] | None = None,
    head_out_indices: list[int] | None = None,
    template_path: str | PathLike | None = None,
) -> ModelCard:
    """Renders the model card of one checkpoint (offline).

    Args:
        model_dir_or_model: A `save_pretrained` folder, or a loaded model.
        method: Name of a registered method (`hf_unified_pretrain.models.registry.METHODS`); its entry's card data
            (paper, description, citation, licence) fills the card.
        size: Size name shown in the title and metadata ("tiny", "base", "large", ...).
        training_recipe: Settings shown as a table (e.g. epochs, batch size, optimizer, learning rate, mask ratio).
        results: `{metric: value}` or `{metric: {"value": v, "dataset": "imagenet-1k", "split": "validation",
            "task": "image-classification", "metric": "accuracy"}}`; entries with a dataset and a task also go into
            the Hub `model-index`.
        loss_curve: PNG of the training loss; `save_model_card` copies it next to the card as `loss_curve.png`.
        base_model: Hub id or path of the checkpoint this one was initialised from (metadata `base_model`).
        license: Hub licence identifier (default: the method's). Weights converted from CC BY-NC repositories must
            keep that licence.
        datasets: Hub dataset ids the model was trained on.
        teacher: Frozen teacher used in pre-training (not part of the checkpoint); defaults to the config's
            `teacher_name_or_path` when it has one.
        model_id: Name used in the snippets and the title, e.g. "org/mvp-base" (default: the folder path).
        extra_limitations: Additional bullet points for "Intended uses & limitations".
        head_out_indices: Backbone stages fed to UperNet in the head snippet (default: four evenly spread stages,
            indices into `config.stage_names`).
        template_path: Jinja template (default: the packaged `templates/model_card.md`).

    Returns:
        The `huggingface_hub.ModelCard`; `str(card)` is the README text.
    """
    try:
        info = get_method(method).card
    except KeyError as error:
        raise ValueError(error.args[0]) from None
    if info is None:
        raise ValueError(f"Method {method!r} has no card data in its registry entry (`card=CardInfo(...)`).")
    license = license or info.license
    template = Path(template_path) if template_path is not None else TEMPLATE_PATH
    if not template.is_file():
        raise FileNotFoundError(
            f"Model-card template {template} not found; pass template_path= (it ships inside the package as templates/model_card.md)."
        )
    loss_curve_path = Path(loss_curve) if loss_curve is not None else None
    if loss_curve_path is not None and not loss_curve_path.is_file():
        raise FileNotFoundError(f"Loss-curve image {loss_curve_path} does not exist.")

    config, folder, default_reference = _resolve_model(model_dir_or_model)
    checkpoint = model_id or default_reference
    teacher = teacher or getattr(config, "teacher_name_or_path", None)
    has_processor = folder is not None and (folder / "preprocessor_config.json").is_file()
    if config.architectures:
        saved_class = config.architectures[0]
    elif isinstance(model_dir_or_model, PreTrainedModel):
        saved_class = type(model_dir_or_model).__name__
    else:
        saved_class = type(config).__name__.replace("Config", "Model")
    available = [
        cls.__name__
        for auto_class in (AutoModel, AutoModelForPreTraining, AutoBackbone, AutoModelForImageClassification)
        if (cls := _registered_class(auto_class, config)) is not None
    ]
    rows, eval_results = _result_rows(results)
    head_snippet = _head_snippet(checkpoint, config, head_out_indices)

    training, terms, supervision = _training_wording(info, config)
    tags = ["vision", *supervision, method, *info.tags, "hf-unified-pretrain", "image-feature-extraction"]
    if head_snippet:
        tags.append("backbone")
    card_data = ModelCardData(
        library_name="transformers",
        pipeline_tag="image-feature-extraction",
        license=license,
        datasets=[datasets] if isinstance(datasets, str) else datasets,
        base_model=base_model,
        tags=list(dict.fromkeys(tags)),
        model_name=checkpoint,
        eval_results=eval_results or None,
    )
    height, width = _image_size(config)
    classifies = saved_class.endswith("ForImageClassification")
    if _registered_class(AutoModelForImageClassification, config) is not None:
        fine_tuning = "image classification (`AutoModelForImageClassification` adds a fresh head)" + (
            ", and detection / segmentation through the backbone (below)." if head_snippet else "."
        )
    else:
        fine_tuning = (
            "this model type registers no classification head; fine-tune its backbone with the backbone's own classes."
        )
    intended_uses = [
        "Image feature extraction: `AutoModel` returns the encoder's token features (`last_hidden_state`).",
        "Initialisation for fine-tuning: " + fine_tuning,
    ]
    if classifies:
        intended_uses.insert(
            0,
            f"Image classification over the labels it was trained on (`{saved_class}`, classes in `config.id2label`).",
        )
    if saved_class.endswith("ForPreTraining"):
        intended_uses.append(
            f"Continuing `{info.name}` pre-training: `AutoModelForPreTraining` restores the pre-training heads."
        )
    limitations = [
        "Its classes are those of its training labels: for other label sets or tasks, fine-tune it."
        if classifies
        else "A pre-trained representation, not a classifier: fine-tune or probe it on labelled data before use.",
        f"Inputs are expected at {height}x{width} pixels, normalised as the saved image processor does.",
    ]
    if teacher:
        limitations.append(
            f"The frozen teacher `{teacher}` is needed to continue pre-training only; it is not part of this checkpoint."
        )
    limitations.append(
        "The loading code needs the `hf_unified_pretrain` package installed: transformers alone does not know the "
        f"model type `{config.model_type}`."
    )
    limitations += list(extra_limitations or [])

    card = ModelCard.from_template(
        card_data,
        template_path=str(template),
        title=f"{info.name} {size}" + (f" ({checkpoint})" if model_id else ""),
        summary=(
            f"A {size} {info.name} model {training}, packaged as a transformers model by `hf_unified_pretrain`."
            + (f" Objective terms of this checkpoint: {'; '.join(terms)}." if terms else "")
        ),
        method_description=info.description,
        paper_title=info.paper_title,
        paper_url=info.paper_url,
        paper_venue=info.venue,
        model_type=config.model_type,
        config_class=type(config).__name__,
        saved_class=saved_class,
        size=size,
        num_parameters=_format_count(_encoder_parameter_count(config)),
        image_size=f"{height}x{width}",
        available_classes=", ".join(f"`{name}`" for name in available) or "-",
        teacher=teacher,
        base_model=base_model,
        intended_uses=intended_uses,
        limitations=limitations,
        load_snippet=_load_snippet(checkpoint, config, has_processor),
        head_snippet=head_snippet,
        training_recipe=[(_format_value(key), _format_value(value)) for key, value in (training_recipe or {}).items()],
        loss_curve=LOSS_CURVE_NAME if loss_curve_path is not None else None,
        results=rows,
        citation=info.citation,
    )
    card.assets = {LOSS_CURVE_NAME: loss_curve_path} if loss_curve_path is not None else {}
    return card


def save_model_card(card: ModelCard, folder: str | PathLike) -> Path:
    """Writes `folder/README.md` and copies the card's images (the loss curve) next to it.

    Returns:
        The path of the written README.md.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, source in getattr(card, "assets", {}).items():
        target = folder / name
        if Path(source).resolve() != target.resolve():
            shutil.copyfile(source, target)
    readme = folder / "README.md"
    card.save(readme)
    return readme


def card_metadata(readme: str | PathLike) -> dict:
    """The YAML front matter of a saved card as a plain dict (what the Hub indexes)."""
    return ModelCard.load(readme).data.to_dict()


__all__ = ["TEMPLATE_PATH", "card_metadata", "render_model_card", "save_model_card"]
