"""One command line for the package: `hf-unified-pretrain <command> ...` (or `python -m hf_unified_pretrain.cli`).

Commands:
    list          the registered model types and their classes
    convert       original checkpoint -> our save_pretrained folder (`convert <method> <the converter's arguments>`)
    card          render a model card (README.md) into a save_pretrained folder
    reconstruct   run a pre-training checkpoint on images and draw what it predicts for masked patches
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

CONVERTERS = {
    "itpn": "hf_unified_pretrain.models.itpn.convert_itpn_original_to_hf",
    "mvp": "hf_unified_pretrain.models.mvp.convert_mvp_original_to_hf",
}


def _list(_: argparse.Namespace) -> None:
    from .models.auto import _METHODS

    for package, classes in _METHODS.items():
        module = importlib.import_module(f"hf_unified_pretrain.models.{package}")
        model_type = getattr(module, classes["config"]).model_type
        print(f"{package} (model_type={model_type!r}): " + ", ".join(classes[key] for key in classes))


def _convert(args: argparse.Namespace) -> None:
    if args.method not in CONVERTERS:
        raise SystemExit(f"No converter for {args.method!r}; available: {', '.join(sorted(CONVERTERS))}.")
    importlib.import_module(CONVERTERS[args.method]).main(args.converter_args)


def _card(args: argparse.Namespace) -> None:
    from .cards import render_model_card, save_model_card

    results = json.loads(args.results) if args.results else None
    card = render_model_card(
        args.folder, method=args.method, size=args.size, results=results, license=args.license,
        datasets=args.datasets, loss_curve=args.loss_curve, model_id=args.model_id,
    )
    print(save_model_card(card, args.folder))


def _reconstruct(args: argparse.Namespace) -> None:
    import torch
    from PIL import Image
    from transformers import AutoImageProcessor, AutoModelForPreTraining

    from .data import EvalTransform
    from .training import draw_feature_prediction, draw_pixel_reconstruction

    model = AutoModelForPreTraining.from_pretrained(args.checkpoint).eval()
    processor = AutoImageProcessor.from_pretrained(args.checkpoint)
    size = model.config.image_size if isinstance(model.config.image_size, int) else model.config.image_size[0]
    transform = EvalTransform(size, processor.image_mean, processor.image_std)
    pixels = torch.stack([transform(Image.open(path))["pixel_values"] for path in args.images])
    batch = {"pixel_values": pixels}
    if hasattr(model, "sample_mask"):
        batch["bool_masked_pos"] = model.sample_mask(pixels, generator=torch.Generator().manual_seed(args.seed))
    else:
        torch.manual_seed(args.seed)  # the model samples its own mask
    pixel_target = getattr(model.config, "pretraining_target", "pixel") == "pixel" and hasattr(model, "decoder")
    if not pixel_target:
        if not args.teacher:
            raise SystemExit("This checkpoint predicts teacher features: pass --teacher <local teacher folder>.")
        from .teachers import FrozenTeacher

        model.set_teacher(FrozenTeacher.from_pretrained(args.teacher, input_mean=processor.image_mean,
                                                        input_std=processor.image_std, target_grid=size // model.config.patch_size))
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        draw = draw_pixel_reconstruction if pixel_target else draw_feature_prediction
        print(draw(model, batch, output_dir))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hf-unified-pretrain", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="registered model types and classes").set_defaults(run=_list)

    convert = commands.add_parser("convert", help="convert an original checkpoint", add_help=False)
    convert.add_argument("method", help=f"one of {', '.join(sorted(CONVERTERS))}")
    convert.add_argument("converter_args", nargs=argparse.REMAINDER, help="arguments of the method's converter")
    convert.set_defaults(run=_convert)

    card = commands.add_parser("card", help="write README.md (model card) into a checkpoint folder")
    card.add_argument("folder")
    card.add_argument("--method", required=True, help="itpn, multimae, mvp, m3i or amdim")
    card.add_argument("--size", default="custom")
    card.add_argument("--results", help='JSON, e.g. \'{"top-1": {"value": 85.1, "dataset": "imagenet-1k", '
                                        '"task": "image-classification"}}\'')
    card.add_argument("--license", default="apache-2.0")
    card.add_argument("--datasets", nargs="*")
    card.add_argument("--loss_curve")
    card.add_argument("--model_id")
    card.set_defaults(run=_card)

    reconstruct = commands.add_parser("reconstruct", help="draw a pre-training model's predictions on images")
    reconstruct.add_argument("checkpoint")
    reconstruct.add_argument("images", nargs="+")
    reconstruct.add_argument("--output_dir", default=".")
    reconstruct.add_argument("--teacher", help="local teacher folder (feature-target checkpoints)")
    reconstruct.add_argument("--seed", type=int, default=0)
    reconstruct.set_defaults(run=_reconstruct)
    return parser


def main(argv: list[str] | None = None) -> None:
    import hf_unified_pretrain  # noqa: F401  (registration)

    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    args.run(args)


if __name__ == "__main__":
    main()
