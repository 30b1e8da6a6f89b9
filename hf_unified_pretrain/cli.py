"""One command line for the package: `hf-unified-pretrain <command> ...` (or `python -m hf_unified_pretrain.cli`).

Commands:
    list          the registered methods, their model types and classes
    convert       original checkpoint -> our save_pretrained folder:
                  `convert <method> --checkpoint PATH --output_dir DIR [--kind K] [--set key=value ...]`
    card          render a model card (README.md) into a save_pretrained folder
    reconstruct   run a pre-training checkpoint on images and draw what it predicts for masked patches
    evaluate-probe  kNN and linear-probe accuracy of a checkpoint's frozen features on class-folder images
    pseudo-label  add pseudo depth / semantic maps to an RGB dataset with local HF models

Methods, their classes and converters come from `hf_unified_pretrain.models.registry`.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

from .models.registry import METHODS


def _list(_: argparse.Namespace) -> None:
    for entry in METHODS.values():
        config_class = entry.load("config")
        classes = ", ".join(entry.class_names().values())
        print(f"{entry.name} (model_type={config_class.model_type!r}): {classes}")
        details = [f"converter: {entry.converter or '-'}"]
        if entry.presets:
            details.append(f"presets: {', '.join(entry.preset_names())}")
        print("    " + "; ".join(details))


def _convert(args: argparse.Namespace) -> None:
    from .conversion import ConversionError

    try:
        importlib.import_module(METHODS[args.method].converter).main(args.converter_args)
    except (FileNotFoundError, ConversionError) as error:
        # A wrong path or a checkpoint that does not fit is the user's input: the message (which names the fix) is
        # the whole answer, like every other CLI error; Python callers of the converters still get the exception.
        raise SystemExit(f"hf-unified-pretrain convert {args.method}: error: {error}") from error


def _saved_config(folder: str) -> dict | None:
    """The config.json of a save_pretrained folder as a dict (None without one), read without building a model."""
    config_file = Path(folder) / "config.json"
    return json.loads(config_file.read_text()) if config_file.is_file() else None


def _card_method(folder: str, method: str | None) -> str:
    """The method of a save_pretrained folder, read from its config.json's model_type; `method` (--method) must agree
    with it, and is needed only for a folder without config.json."""
    from .models.registry import method_for_config

    config = _saved_config(folder)
    if config is None:
        if method is None:
            raise SystemExit(f"card: {folder} has no config.json to read the method from; pass --method.")
        return method
    model_type = config.get("model_type")
    try:
        found = method_for_config(model_type).name
    except KeyError:
        raise SystemExit(
            f"card: {folder} holds a model of model_type {model_type!r}, which is none of this package's methods "
            f"({', '.join(METHODS)}); cards are written for those only."
        ) from None
    if method is not None and method != found:
        raise SystemExit(
            f"card: --method {method} does not match {folder}, whose config.json is a {found} model "
            f"(model_type {model_type!r}); drop --method or pass --method {found}."
        )
    return found


def _card(args: argparse.Namespace) -> None:
    from .cards import render_model_card, save_model_card

    method = _card_method(args.folder, args.method)
    results = json.loads(args.results) if args.results else None
    card = render_model_card(
        args.folder,
        method=method,
        size=args.size,
        results=results,
        license=args.license,
        datasets=args.datasets,
        loss_curve=args.loss_curve,
        model_id=args.model_id,
    )
    print(save_model_card(card, args.folder))


# Methods whose pre-training model predicts what is under a mask, and what `reconstruct` draws for them.
RECONSTRUCT_METHODS = {
    "itpn": "masked pixels, or CLIP-teacher features with --teacher",
    "mvp": "masked-patch teacher features (with --teacher)",
    "multimae": "the cross-modal prediction picture (RGB in; every decoder's prediction out)",
}
RECONSTRUCT_SUPPORTED = "iTPN, MVP and MultiMAE pre-training folders (<Model>ForPreTraining.save_pretrained)"


def _reconstruct_method(folder: str) -> str:
    """The registered method of a reconstructable pre-training folder; a one-line SystemExit naming what the folder
    holds otherwise (checked on config.json, before any weights are read)."""
    from .models.registry import method_for_config

    config = _saved_config(folder)
    if config is None:
        raise SystemExit(
            f"reconstruct: {folder} has no config.json; pass a save_pretrained folder. Supported: "
            f"{RECONSTRUCT_SUPPORTED}."
        )
    model_type = config.get("model_type")
    held = (config.get("architectures") or [None])[0]
    try:
        entry = method_for_config(model_type)
    except KeyError:
        raise SystemExit(
            f"reconstruct: {folder} holds {held or 'a model'} (model_type {model_type!r}), which is not "
            f"one of this package's methods. Supported: {RECONSTRUCT_SUPPORTED}."
        ) from None
    title = entry.card.name if entry.card else entry.name
    held = held or f"{title} model"
    if entry.name not in RECONSTRUCT_METHODS:
        raise SystemExit(
            f"reconstruct: {folder} holds {held} ({title}); reconstruct draws the masked-patch predictions of "
            f"{RECONSTRUCT_SUPPORTED} only."
        )
    pretraining = entry.class_names().get("pretraining")
    if held != f"{title} model" and held != pretraining:
        raise SystemExit(
            f"reconstruct: {folder} holds {held}, saved without the pre-training decoder/head, so the prediction "
            f"would be drawn by random weights. Pass a folder written by {pretraining}.save_pretrained (e.g. a run "
            f"script's --output_dir). Supported: {RECONSTRUCT_SUPPORTED}."
        )
    return entry.name


def _reconstruct(args: argparse.Namespace) -> None:
    method = _reconstruct_method(args.checkpoint)

    import torch
    from PIL import Image
    from transformers import AutoImageProcessor, AutoModelForPreTraining

    from .data import EvalTransform
    from .models.registry import image_processor_for
    from .training import draw_feature_prediction, draw_pixel_reconstruction

    model, loading_info = AutoModelForPreTraining.from_pretrained(args.checkpoint, output_loading_info=True)
    if loading_info["missing_keys"]:
        # Missing weights would be freshly (randomly) initialised: the figure would show a random decoder or head.
        missing = sorted(loading_info["missing_keys"])
        raise SystemExit(
            f"{args.checkpoint} has no weights for {len(missing)} tensors of {type(model).__name__} (e.g. "
            f"{', '.join(missing[:4])}): it was not saved from a pre-training model with its decoder/head, so the "
            "reconstruction would be drawn by random weights. Pass a folder written by <Model>ForPreTraining."
            "save_pretrained (e.g. a run script's --output_dir)."
        )
    model.eval()
    try:
        processor = AutoImageProcessor.from_pretrained(args.checkpoint)
    except OSError:  # no preprocessor_config.json: the registered processor sized to the config
        processor = image_processor_for(model.config)
    size = model.config.image_size if isinstance(model.config.image_size, int) else model.config.image_size[0]
    transform = EvalTransform(size, processor.image_mean, processor.image_std)
    pixels = torch.stack([transform(Image.open(path))["pixel_values"] for path in args.images])
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(args.seed)
    if method == "multimae":
        from .training.multimodal_plots import draw_multimodal_predictions

        rgb = model.config.rgb_modality or "rgb"
        if rgb not in model.config.input_modalities:
            raise SystemExit(
                f"reconstruct: this MultiMAE model takes no RGB input (input_modalities = "
                f"{model.config.input_modalities}); reconstruct feeds the images as {rgb!r}."
            )
        num_tokens = model.config.grid_size[0] * model.config.grid_size[1]
        masks = model.mask_generator({rgb: num_tokens})(len(pixels), generator=generator)
        batch = {"modalities": {rgb: pixels}, "bool_masked_pos": masks}
        path = output_dir / "cross_modal_predictions.png"
        print(
            draw_multimodal_predictions(
                model, batch, path, len(pixels), image_mean=processor.image_mean, image_std=processor.image_std
            )
        )
        return
    batch = {"pixel_values": pixels}
    if hasattr(model, "sample_mask"):
        batch["bool_masked_pos"] = model.sample_mask(pixels, generator=generator)
    else:
        torch.manual_seed(args.seed)  # the model samples its own mask
    pixel_target = getattr(model.config, "pretraining_target", "pixel") == "pixel" and hasattr(model, "decoder")
    if not pixel_target:
        if not args.teacher:
            raise SystemExit(
                f"reconstruct: this {type(model).__name__} predicts teacher features: pass --teacher <local teacher "
                "folder> (the frozen teacher it was trained against)."
            )
        from .teachers import FrozenTeacher

        model.set_teacher(
            FrozenTeacher.from_pretrained(
                args.teacher,
                input_mean=processor.image_mean,
                input_std=processor.image_std,
                target_grid=size // model.config.patch_size,
            )
        )
    with torch.no_grad():
        draw = draw_pixel_reconstruction if pixel_target else draw_feature_prediction
        print(draw(model, batch, output_dir))


def _add_pseudo_label_command(commands: argparse._SubParsersAction) -> None:
    """`pseudo-label`; defined here, not beside `pseudo_label_dataset`, so that `--help` does not import `datasets`."""
    parser = commands.add_parser(
        "pseudo-label",
        help="add pseudo depth / semantic maps to an RGB dataset with local HF models",
        description="Adds pseudo `depth` and/or `semseg` columns to an RGB dataset (MultiMAE's extra modalities), "
        "predicted by local Hugging Face depth-estimation / segmentation models; written in chunks, so an "
        "interrupted run resumes.",
    )
    parser.add_argument("dataset", help="save_to_disk folder or image folder of RGB images")
    parser.add_argument(
        "--output_dir", required=True, help="where chunks and the final dataset (<output_dir>/dataset) are written"
    )
    parser.add_argument("--depth_model", help="local folder of a depth-estimation model")
    parser.add_argument("--segmentation_model", help="local folder of a semantic/universal segmentation model")
    parser.add_argument("--image_column", default="image", help="column holding the RGB images (default: image)")
    parser.add_argument("--batch_size", type=int, default=8, help="images per forward pass (default: 8)")
    parser.add_argument(
        "--chunk_size", type=int, default=64, help="images per saved chunk, the unit of resumption (default: 64)"
    )
    parser.add_argument("--device", default="cpu", help="torch device of the models (default: cpu)")
    parser.add_argument("--no_progress", action="store_true", help="no progress bars (also none from `datasets`)")
    parser.set_defaults(run=_pseudo_label)


def _pseudo_label(args: argparse.Namespace) -> None:
    from .data.pseudo_labels import pseudo_label_dataset

    result = pseudo_label_dataset(
        args.dataset,
        args.output_dir,
        args.depth_model,
        args.segmentation_model,
        image_column=args.image_column,
        batch_size=args.batch_size,
        chunk_size=args.chunk_size,
        device=args.device,
        progress=not args.no_progress,
    )
    print(f"Wrote {len(result)} rows with columns {result.column_names} to {Path(args.output_dir) / 'dataset'}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hf-unified-pretrain", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "list",
        help="registered model types and classes",
        description="Lists every registered method: its model_type, its classes (config, models, image processor), "
        "its converter and its presets.",
    ).set_defaults(run=_list)

    converters = [entry for entry in METHODS.values() if entry.converter]
    convert = commands.add_parser(
        "convert",
        help="convert an original checkpoint",
        description="Converts an original checkpoint of a method into a save_pretrained folder. Usage: convert "
        "<method> --checkpoint PATH --output_dir DIR [--kind K] [--set key=value ...]; `convert <method> --help` "
        "shows that method's options.",
    )
    methods = convert.add_subparsers(dest="method", required=True, metavar="METHOD", title="methods")
    for entry in converters:
        # The method's own arguments are left unparsed here and handed to its converter (`main(argv)`).
        title = entry.card.name if entry.card else entry.name
        methods.add_parser(entry.name, add_help=False, help=f"{title} checkpoints")
    convert.set_defaults(run=_convert)

    card = commands.add_parser(
        "card",
        help="write README.md (model card) into a checkpoint folder",
        description="Renders the model card (README.md with Hub metadata, usage and results) of a save_pretrained "
        "folder; the method is read from its config.json.",
    )
    card.add_argument("folder", help="save_pretrained folder; README.md is written into it")
    card.add_argument(
        "--method",
        choices=[name for name, e in METHODS.items() if e.card],
        help="the folder's method (default: read from config.json's model_type; must agree with it)",
    )
    card.add_argument("--size", default="custom", help="size name shown in the title, e.g. base (default: custom)")
    card.add_argument(
        "--results",
        help='JSON, e.g. \'{"top-1": {"value": 85.1, "dataset": "imagenet-1k", "task": "image-classification"}}\'',
    )
    card.add_argument("--license", help="Hub licence id (default: the method's)")
    card.add_argument("--datasets", nargs="*", help="Hub dataset ids the model was trained on (card metadata)")
    card.add_argument("--loss_curve", help="PNG of the training loss shown in the card")
    card.add_argument(
        "--model_id", help="name used in the snippets and the title, e.g. org/mvp-base (default: the folder path)"
    )
    card.set_defaults(run=_card)

    reconstruct = commands.add_parser(
        "reconstruct",
        help="draw a pre-training model's predictions on images",
        description="Runs a saved pre-training model on images with a random mask and draws what it predicts. "
        f"Supported: {RECONSTRUCT_SUPPORTED}. Drawn: "
        + "; ".join(f"{METHODS[name].card.name}: {what}" for name, what in RECONSTRUCT_METHODS.items())
        + ". Other folders (encoders, classifiers, AMDIM, M3I, InternImage) are refused with a message.",
    )
    reconstruct.add_argument("checkpoint", help="save_pretrained folder of a supported pre-training model")
    reconstruct.add_argument("images", nargs="+", help="image files to run the model on")
    reconstruct.add_argument("--output_dir", default=".", help="folder the PNG is written to (default: .)")
    reconstruct.add_argument("--teacher", help="local teacher folder (feature-target checkpoints)")
    reconstruct.add_argument("--seed", type=int, default=0, help="seed of the random mask (default: 0)")
    reconstruct.set_defaults(run=_reconstruct)

    from .evaluation.cli import add_evaluate_probe_command

    add_evaluate_probe_command(commands)

    _add_pseudo_label_command(commands)
    return parser


def main(argv: list[str] | None = None) -> None:
    import hf_unified_pretrain  # noqa: F401  (registration)

    parser = build_parser()
    args, extra = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    if args.command == "convert":
        args.converter_args = extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.run(args)


if __name__ == "__main__":
    main()
