"""The `evaluate-probe` command: kNN and linear-probe accuracy of a checkpoint's frozen features on image folders.

    hf-unified-pretrain evaluate-probe outputs/itpn-quickstart --train_dir cifar/train --eval_dir cifar/test \
        --max_images 5000 --json results.json

Both folders hold one sub-folder per class. The checkpoint is loaded with `AutoModel` (pre-training heads and
teachers are left out) and its image processor's normalisation is used; images are resized to the model's
`image_size` (or `--image_size`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .knn import DEFAULT_K, DEFAULT_TEMPERATURE
from .linear_probe import DEFAULT_EPOCHS

COMMAND = "evaluate-probe"


def add_evaluate_probe_command(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Adds `evaluate-probe` to a sub-command set (the package CLI's)."""
    parser = commands.add_parser(
        COMMAND,
        help="kNN and linear-probe accuracy of a checkpoint's frozen features on class-folder images",
        description=__doc__.split("\n")[0],
    )
    parser.add_argument("model", help="save_pretrained folder of any of our models (or a transformers vision model)")
    parser.add_argument("--train_dir", required=True, help="labelled images: <train_dir>/<class>/<image>")
    parser.add_argument("--eval_dir", required=True, help="evaluated images, same class folders")
    parser.add_argument("--k", type=int, default=DEFAULT_K, help="kNN neighbours")
    parser.add_argument("--temperature", type=float, default=DEFAULT_TEMPERATURE, help="kNN vote temperature")
    parser.add_argument(
        "--linear_probe_epochs", type=int, default=DEFAULT_EPOCHS, help="epochs of the linear probe (0: no probe)"
    )
    parser.add_argument("--batch_size", type=int, default=64, help="images per forward pass")
    parser.add_argument("--max_images", type=int, help="at most this many images per folder (class-balanced)")
    parser.add_argument("--image_size", type=int, help="input side (default: the model config's image_size)")
    parser.add_argument("--intermediate", action="store_true", help="also per-layer / per-stage pooled features")
    parser.add_argument("--seed", type=int, default=0, help="seed of the linear probe")
    parser.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    parser.add_argument(
        "--json",
        dest="json_path",
        help="also write the results as JSON to this file ('-': stdout, the table then goes to stderr)",
    )
    parser.set_defaults(run=run_evaluate_probe)
    return parser


def run_evaluate_probe(args: argparse.Namespace) -> dict:
    """Loads the model and both folders, evaluates, prints a table (and JSON); returns the results."""
    import torch

    from .features import load_feature_model
    from .probe import evaluate_probe, load_image_folder, probe_transform

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = load_feature_model(args.model).to(device)
    transform = probe_transform(model.config, args.model, args.image_size)
    train = load_image_folder(args.train_dir, transform, args.max_images, progress=True)
    evaluation = load_image_folder(args.eval_dir, transform, args.max_images, train.class_names, progress=True)
    results = evaluate_probe(
        model,
        train,
        evaluation,
        k=args.k,
        temperature=args.temperature,
        linear_probe_epochs=args.linear_probe_epochs,
        batch_size=args.batch_size,
        intermediate=args.intermediate,
        seed=args.seed,
        progress=True,
    )
    report = {
        "model": str(args.model),
        "num_train_images": len(train),
        "num_eval_images": len(evaluation),
        "classes": train.class_names,
        "k": args.k,
        "temperature": args.temperature,
        "linear_probe_epochs": args.linear_probe_epochs,
        "results": results,
    }
    # With `--json -` stdout carries the JSON alone (parseable by a pipe); the human table then goes to stderr.
    table = sys.stderr if args.json_path == "-" else sys.stdout
    print(
        f"{args.model}: {len(train)} train / {len(evaluation)} eval images, {len(train.class_names)} classes",
        file=table,
    )
    print(f"{'feature':<24} {'kNN top-1':>10} {'kNN top-5':>10} {'linear top-1':>13}", file=table)
    for name, values in results.items():
        linear = f"{100 * values['linear_top1']:.2f}" if "linear_top1" in values else "-"
        print(
            f"{name:<24} {100 * values['knn_top1']:>10.2f} {100 * values['knn_top5']:>10.2f} {linear:>13}", file=table
        )
    if args.json_path == "-":
        print(json.dumps(report, indent=2))
    elif args.json_path:
        Path(args.json_path).write_text(json.dumps(report, indent=2))
    return report
