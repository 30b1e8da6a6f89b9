#!/usr/bin/env python
"""Does pre-training learn? Pre-train each method on CIFAR-10, then compare frozen features with random init.

For every method row of `METHODS` and every seed, the method's run script pre-trains its `*_learning.json` recipe on
a class-balanced CIFAR-10 training subset (in a subprocess; its CPU time, user + system of the child, is measured
and printed). Then a weighted kNN (k=20, T=0.07) and the fixed linear-probe recipe of `hf_unified_pretrain.evaluation`
score frozen features on a CIFAR-10 test subset, with a class-balanced training subset as kNN bank / probe training
set, for

- the pre-trained encoder and the same config randomly initialised with the same seed;
- the pooled output (`pooled`) and the best pooled intermediate feature (per layer / stage / pyramid level), chosen
  per model by kNN accuracy on a validation split of the training subset (never on the test images).

Checkpoints saved during pre-training give the learning curves (kNN top-1 against steps).

Feature-target methods need a frozen teacher. No CLIP weights exist offline, so a row may name an earlier row as its
teacher: that method's pre-trained folder (same seed, or the row's fixed `teacher_seed`) is loaded through
`FrozenTeacher` like any HF vision model (`AutoModel`: a ViT's last-layer patch tokens, or a CNN's feature map pooled
onto the student's patch grid). MVP's teacher is the AMDIM row (seed 0).

    python benchmarks/learning.py                          # every row, seeds 0 and 1, prints the markdown table
    python benchmarks/learning.py --methods itpn --seeds 0 --set itpn.max_steps=300

Adding a method (AMDIM, MultiMAE, M3I, ...) is adding a `MethodSpec` row and a `training_scripts/configs/
<method>_learning.json` recipe. Needs `../shared/data/cifar10_jpeg.tar.gz`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import transformers

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import hf_unified_pretrain  # noqa: F401  (registers our model types)
from hf_unified_pretrain.data import CIFAR10_CLASSES, extract_cifar10_jpeg
from hf_unified_pretrain.evaluation import (
    POOLED,
    LabelledImages,
    extract_features,
    knn_accuracy,
    linear_probe,
    load_image_folder,
    probe_transform,
)


@dataclass
class MethodSpec:
    """One method row.

    Attributes:
        name: Row name (and run-folder prefix).
        script: Run script under `training_scripts/`.
        recipe: JSON recipe under `training_scripts/configs/` (the benchmark adds data paths, output folder, seed).
        teacher: Name of an earlier row whose pre-trained folder is this row's frozen teacher.
        teacher_recipe: Recipe keys added when a teacher is used (how the run script loads it).
        teacher_width_field: Config field set to the width of the teacher's target features.
        teacher_step: Teach with this saved checkpoint of the teacher's run instead of its final model.
        teacher_seed: Teach every seed with the teacher row's run of this seed (one fixed teacher, as MVP's one
            CLIP); None: the teacher run of the same seed.
    """

    name: str
    script: str
    recipe: str
    teacher: str | None = None
    teacher_recipe: dict = field(default_factory=dict)
    teacher_width_field: str | None = None
    teacher_step: int | None = None
    teacher_seed: int | None = None


METHODS: dict[str, MethodSpec] = {
    "itpn": MethodSpec("itpn", "run_itpn.py", "itpn_learning.json"),
    "amdim": MethodSpec("amdim", "run_amdim.py", "amdim_learning.json"),
    # MVP's idea is a semantically strong frozen teacher (CLIP in the paper). Offline, the strongest model this
    # benchmark trains is the contrastive AMDIM row: its global feature r1 (`last_hidden_state`, a 1x1 map at 32 px)
    # is FrozenTeacher's target, pooled onto (i.e. repeated over) the student's patch grid. One fixed teacher (the
    # AMDIM seed-0 run) for every MVP seed, as MVP's one CLIP: the seeds vary the student.
    "mvp": MethodSpec(
        "mvp",
        "run_mvp.py",
        "mvp_learning.json",
        teacher="amdim",
        teacher_recipe={"teacher_model_class": "AutoModel", "teacher_feature": "last_hidden_state"},
        teacher_width_field="teacher_dim",
        teacher_seed=0,
    ),
    # M3I, tiny InternImage: labels off (intra- + inter-view dense EMA targets) and on (+ the category term with
    # CIFAR-10's folder labels). Both at 32 px with the dense terms on stage 3: the same 2x2 cells as the last stage
    # at 64 px at half the CPU per step. Then the term ablation (text: CIFAR-10 has no captions).
    "m3i": MethodSpec("m3i", "run_m3i.py", "m3i_learning.json"),
    "m3i-labels": MethodSpec("m3i-labels", "run_m3i.py", "m3i_labels_learning.json"),
    "m3i-intra": MethodSpec("m3i-intra", "run_m3i.py", "m3i_intra_learning.json"),
    "m3i-inter": MethodSpec("m3i-inter", "run_m3i.py", "m3i_inter_learning.json"),
    "m3i-category": MethodSpec("m3i-category", "run_m3i.py", "m3i_category_learning.json"),
    # MultiMAE on RGB only (no offline model gives real pseudo depth / semseg; a random one's maps carry no
    # information): rgb + norm_rgb decoders. Patch 8 (16 tokens, 4 visible): patch 4's random-init features are
    # already strong (linear ~40 vs ~34), which leaves little margin, and patch 8 steps are 3x cheaper.
    "multimae": MethodSpec("multimae", "run_multimae.py", "multimae_learning.json"),
}

GOAL_KNN, GOAL_LINEAR = 5.0, 10.0  # points above random init


def _child_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def pretraining_folder(data_dir: Path, cifar_root: Path, images_per_class: int) -> Path:
    """A class-balanced CIFAR-10 training subset as an image folder (first files of every class).

    Files are hard links (copies across file systems): `datasets`' folder glob does not follow symlinks.
    """
    folder = data_dir / f"cifar10_pretrain_{images_per_class}"
    marker = folder / ".complete"
    if marker.is_file():
        return folder / "train"
    for name in CIFAR10_CLASSES:
        target = folder / "train" / name
        target.mkdir(parents=True, exist_ok=True)
        for source in sorted((cifar_root / "train" / name).iterdir())[:images_per_class]:
            link = target / source.name
            if not link.exists():
                try:
                    os.link(source, link)
                except FileExistsError:  # a concurrent run in the same --work_dir linked it first
                    pass
                except OSError:  # another file system
                    shutil.copyfile(source, link)
    marker.write_text("ok")
    return folder / "train"


def teacher_feature_width(teacher_dir: Path, recipe: dict) -> int:
    """Width of the target features the run script's `FrozenTeacher` will give (ViT hidden size, CNN channels)."""
    from hf_unified_pretrain.teachers import FrozenTeacher

    teacher = FrozenTeacher.from_pretrained(
        teacher_dir,
        model_class=recipe.get("teacher_model_class", "AutoModel"),
        feature=recipe.get("teacher_feature", "last_hidden_state"),
        target_grid=1,  # any grid: only the width is read
    )
    return teacher.feature_dim


def resolve_recipe(
    spec: MethodSpec, seed: int, run_dir: Path, train_dir: Path, overrides: dict, teacher_dir: Path | None
):
    recipe = json.loads((REPO_ROOT / "training_scripts" / "configs" / spec.recipe).read_text())
    recipe.update({"output_dir": str(run_dir), "train_dir": str(train_dir), "seed": seed, "report_to": "none"})
    if teacher_dir is not None:
        recipe.update(spec.teacher_recipe)
        recipe["teacher_name_or_path"] = str(teacher_dir)
    # --set overrides before the teacher width: a `config_overrides` override keeps the teacher's width field.
    recipe.update(overrides)
    if teacher_dir is not None and spec.teacher_width_field:
        width = teacher_feature_width(teacher_dir, recipe)
        extra = f"{spec.teacher_width_field}={width}"
        recipe["config_overrides"] = (
            f"{recipe['config_overrides']},{extra}" if recipe.get("config_overrides") else extra
        )
    return recipe


def pretrain(spec: MethodSpec, recipe: dict, run_dir: Path, force: bool) -> dict:
    """Runs the method's script on `recipe` (skipped when `run_dir` holds a finished run of the same recipe)."""
    recipe_file = run_dir / "learning_recipe.json"
    info_file = run_dir / "learning_run.json"
    same_recipe = recipe_file.is_file() and json.loads(recipe_file.read_text()) == recipe
    if not force and info_file.is_file() and same_recipe:
        return json.loads(info_file.read_text())
    if run_dir.is_dir() and (force or not same_recipe):
        # Another recipe's run (or --force): the run script would resume from its checkpoints.
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    recipe_file.write_text(json.dumps(recipe, indent=2))
    command = [sys.executable, str(REPO_ROOT / "training_scripts" / spec.script), str(recipe_file)]
    # One thread per run: on a shared machine, idle OpenMP threads spin and inflate the measured CPU time.
    threads = os.environ.get("LEARNING_THREADS", "1")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": threads}
    cpu_before, wall_before = _child_cpu_seconds(), time.perf_counter()
    with open(run_dir / "learning_run.log", "w") as log:
        subprocess.run(command, check=True, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
    info = {
        "cpu_minutes": (_child_cpu_seconds() - cpu_before) / 60,
        "wall_minutes": (time.perf_counter() - wall_before) / 60,
        "steps": recipe["max_steps"],
        "batch_size": recipe["per_device_train_batch_size"],
    }
    info_file.write_text(json.dumps(info, indent=2))
    return info


class ProbeData:
    """The kNN bank / probe training images and the test queries, decoded once per input transform."""

    def __init__(self, cifar_root: Path, bank_size: int, query_size: int, validation_size: int) -> None:
        self.cifar_root, self.bank_size, self.query_size = cifar_root, bank_size, query_size
        self.validation_size = validation_size
        self._cache: dict[str, tuple[LabelledImages, LabelledImages]] = {}

    def get(self, transform) -> tuple[LabelledImages, LabelledImages]:
        key = repr(transform) + repr(transform.image_mean if hasattr(transform, "image_mean") else "")
        if key not in self._cache:
            bank = load_image_folder(self.cifar_root / "train", transform, self.bank_size)
            queries = load_image_folder(self.cifar_root / "test", transform, self.query_size, bank.class_names)
            self._cache[key] = (bank, queries)
        return self._cache[key]


def evaluate_model(model, data: ProbeData, transform, args, fixed_feature: str | None = None) -> dict:
    """Test kNN / linear probe for `pooled` and the best intermediate feature (chosen on a validation split)."""
    bank, queries = data.get(transform)
    bank_features = extract_features(model, bank.pixel_values, batch_size=args.batch_size, intermediate=True)
    query_features = extract_features(model, queries.pixel_values, batch_size=args.batch_size, intermediate=True)
    split = len(bank) - data.validation_size
    knn_kwargs = dict(k=args.k, temperature=args.temperature, num_classes=len(bank.class_names))
    validation = {
        name: knn_accuracy(features[:split], bank.labels[:split], features[split:], bank.labels[split:], **knn_kwargs)[
            "top1"
        ]
        for name, features in bank_features.items()
    }
    # A pooler built fresh when a pre-training checkpoint is loaded into AutoModel is untrained: not a candidate.
    intermediate = [name for name in validation if name not in (POOLED, "pooler_output")]
    best = fixed_feature or max(intermediate, key=lambda name: validation[name])
    result = {"validation_knn": validation, "best_feature": best}
    for label, name in ((POOLED, POOLED), ("best", best)):
        knn = knn_accuracy(bank_features[name], bank.labels, query_features[name], queries.labels, **knn_kwargs)
        entry = {"feature": name, "knn_top1": knn["top1"]}
        if args.linear_probe_epochs > 0:
            probe = linear_probe(
                bank_features[name],
                bank.labels,
                query_features[name],
                queries.labels,
                num_classes=len(bank.class_names),
                epochs=args.linear_probe_epochs,
                seed=0,
            )
            entry["linear_top1"] = probe.accuracy
        result[label] = entry
    return result


def random_init_model(run_dir: Path, seed: int):
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.from_pretrained(run_dir)
    torch.manual_seed(seed)
    return AutoModel.from_config(config)


def learning_curve(run_dir: Path, data: ProbeData, transform, args, best_feature: str) -> list[dict]:
    """kNN top-1 (pooled and `best_feature`) of every checkpoint saved during pre-training."""
    from transformers import AutoModel

    points = []
    checkpoints = sorted(run_dir.glob("checkpoint-*"), key=lambda path: int(path.name.split("-")[1]))
    final_step = json.loads((run_dir / "learning_recipe.json").read_text())["max_steps"]
    checkpoints = [
        path
        for path in checkpoints
        if int(path.name.split("-")[1]) % args.curve_every == 0 and int(path.name.split("-")[1]) != final_step
    ]
    bank, queries = data.get(transform)
    for checkpoint in checkpoints:
        model = AutoModel.from_pretrained(checkpoint)
        features_bank = extract_features(model, bank.pixel_values, batch_size=args.batch_size, intermediate=True)
        features_query = extract_features(model, queries.pixel_values, batch_size=args.batch_size, intermediate=True)
        point = {"step": int(checkpoint.name.split("-")[1])}
        for name in (POOLED, best_feature):
            point[name] = knn_accuracy(
                features_bank[name],
                bank.labels,
                features_query[name],
                queries.labels,
                k=args.k,
                temperature=args.temperature,
            )["top1"]
        points.append(point)
    return points


def online_knn_curve(run_dir: Path) -> list[dict]:
    """`knn_top1` and the loss logged during pre-training (`--online_knn_steps`), from the run's trainer state."""
    state_file = run_dir / "trainer_state.json"
    if not state_file.is_file():
        return []
    history = json.loads(state_file.read_text())["log_history"]
    return [{"step": e["step"], "knn_top1": e["knn_top1"], "loss": e.get("loss")} for e in history if "knn_top1" in e]


def evaluate_run(run_dir: Path, seed: int, data: ProbeData, args) -> dict:
    """Pre-trained vs random init (+ the curve) of one run; cached in the run folder per evaluation setting."""
    from transformers import AutoModel

    setting = {key: getattr(args, key) for key in EVALUATION_SETTINGS}
    cache = run_dir / "learning_eval.json"
    if cache.is_file():
        cached = json.loads(cache.read_text())
        same = all(cached["setting"].get(key) == value for key, value in setting.items())
        if same and (cached["curve"] or args.no_curves):
            return cached
    transform = probe_transform(AutoModel.from_pretrained(run_dir).config, run_dir)
    pretrained = evaluate_model(AutoModel.from_pretrained(run_dir), data, transform, args)
    random = evaluate_model(random_init_model(run_dir, seed), data, transform, args)
    curve = [] if args.no_curves else learning_curve(run_dir, data, transform, args, pretrained["best"]["feature"])
    result = {"setting": setting, "pretrained": pretrained, "random": random, "curve": curve}
    cache.write_text(json.dumps(result, indent=2))
    return result


EVALUATION_SETTINGS = (
    "bank_size",
    "validation_size",
    "query_size",
    "k",
    "temperature",
    "linear_probe_epochs",
)


def _mean(values: list[float]) -> float:
    return 100 * statistics.mean(values)


def _cell(values: list[float]) -> str:
    per_seed = "/".join(f"{100 * value:.1f}" for value in values)
    return f"{_mean(values):.1f} ({per_seed})" if len(values) > 1 else f"{_mean(values):.1f}"


def markdown_table(results: dict, seeds: list[int]) -> str:
    lines = [
        "| method | features (pre-trained / random) | kNN pre-trained | kNN random | Δ kNN | linear pre-trained"
        + " | linear random | Δ linear | goal (+5 / +10) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for method, rows in results.items():
        for label in (POOLED, "best"):
            pre = [rows[seed]["pretrained"][label] for seed in seeds]
            rnd = [rows[seed]["random"][label] for seed in seeds]
            names = (
                "pooled"
                if label == POOLED
                else (
                    f"best intermediate: {', '.join(sorted({p['feature'] for p in pre}))} / "
                    f"{', '.join(sorted({r['feature'] for r in rnd}))}"
                )
            )
            knn_pre, knn_rnd = [p["knn_top1"] for p in pre], [r["knn_top1"] for r in rnd]
            lin_pre, lin_rnd = [p.get("linear_top1", 0.0) for p in pre], [r.get("linear_top1", 0.0) for r in rnd]
            delta_knn, delta_lin = _mean(knn_pre) - _mean(knn_rnd), _mean(lin_pre) - _mean(lin_rnd)
            met = "yes" if delta_knn >= GOAL_KNN and delta_lin >= GOAL_LINEAR else "no"
            lines.append(
                f"| {method} | {names} | {_cell(knn_pre)} | {_cell(knn_rnd)} | {delta_knn:+.1f} | {_cell(lin_pre)} "
                f"| {_cell(lin_rnd)} | {delta_lin:+.1f} | {met} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=sorted(METHODS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--data_root", default=str(REPO_ROOT.parent / "shared" / "data"))
    parser.add_argument(
        "--work_dir",
        default=str(REPO_ROOT / "outputs" / "learning"),
        help="Not under a hidden folder: `datasets` skips those.",
    )
    parser.add_argument("--pretrain_images_per_class", type=int, default=2000)
    parser.add_argument("--bank_size", type=int, default=5000, help="CIFAR-10 training images (kNN bank, probe).")
    parser.add_argument("--validation_size", type=int, default=1000, help="Bank images held out to pick features.")
    parser.add_argument("--query_size", type=int, default=2000, help="CIFAR-10 test images evaluated.")
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--temperature", type=float, default=0.07)
    parser.add_argument("--linear_probe_epochs", type=int, default=100)
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--set", nargs="*", default=[], metavar="METHOD.KEY=VALUE", help="Recipe overrides.")
    parser.add_argument(
        "--teacher_step",
        type=int,
        help="Teach with this saved checkpoint of the teacher row (default: the row's).",
    )
    parser.add_argument("--force", action="store_true", help="Pre-train again even if a finished run exists.")
    parser.add_argument("--no_curves", action="store_true", help="Skip the per-checkpoint kNN curves.")
    parser.add_argument(
        "--curve_every", type=int, default=1, help="Curves: only checkpoints whose step is a multiple of this."
    )
    parser.add_argument(
        "--online_knn_steps",
        type=int,
        default=0,
        help="Also log kNN top-1 during pre-training every N steps (the run script's --knn_eval_dir on CIFAR-10 "
        "training images: 1000 bank, 500 queries; its CPU time counts in the run's budget). 0: off.",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("LEARNING_THREADS", "1")))
    transformers.logging.set_verbosity_error()  # loading a pre-training checkpoint into AutoModel drops its heads

    overrides: dict[str, dict] = {name: {} for name in METHODS}
    for item in args.set:
        key, _, value = item.partition("=")
        method, _, recipe_key = key.partition(".")
        if method not in METHODS or not recipe_key or not _:
            raise SystemExit(f"--set expects METHOD.KEY=VALUE with METHOD in {sorted(METHODS)}, got {item!r}.")
        overrides[method][recipe_key] = _parse_value(value)

    work_dir = Path(args.work_dir)
    cifar_root = extract_cifar10_jpeg(args.data_root, REPO_ROOT / ".cache" / "data")
    train_dir = pretraining_folder(work_dir, cifar_root, args.pretrain_images_per_class)
    data = ProbeData(cifar_root, args.bank_size, args.query_size, args.validation_size)
    methods = [name for name in METHODS if name in args.methods]

    results: dict[str, dict] = {}
    runs: dict[str, dict] = {}
    for name in methods:
        spec = METHODS[name]
        results[name], runs[name] = {}, {}
        for seed in args.seeds:
            run_dir = work_dir / "runs" / f"{name}-seed{seed}"
            teacher_dir = None
            if spec.teacher:
                teacher_seed = seed if spec.teacher_seed is None else spec.teacher_seed
                teacher_dir = work_dir / "runs" / f"{spec.teacher}-seed{teacher_seed}"
                teacher_step = args.teacher_step if args.teacher_step is not None else spec.teacher_step
                if teacher_step is not None:
                    teacher_dir = teacher_dir / f"checkpoint-{teacher_step}"
                if not (teacher_dir / "model.safetensors").is_file():
                    raise SystemExit(
                        f"{name} is taught by the {spec.teacher} row, but {teacher_dir} holds no pre-trained model: "
                        f"run --methods {spec.teacher} {name} (or pick a saved --teacher_step)."
                    )
            if args.online_knn_steps > 0:  # training images only: the test images stay unseen until the end
                online = {"knn_eval_dir": str(cifar_root / "train"), "knn_eval_steps": args.online_knn_steps}
                overrides[name] = {**online, **overrides[name]}
            recipe = resolve_recipe(spec, seed, run_dir, train_dir, overrides[name], teacher_dir)
            print(f"[{name} seed {seed}] pre-training {recipe['max_steps']} steps ...", flush=True)
            info = pretrain(spec, recipe, run_dir, args.force)
            results[name][seed] = evaluate_run(run_dir, seed, data, args)
            pretrained, random, curve = (results[name][seed][key] for key in ("pretrained", "random", "curve"))
            runs[name][seed] = {
                **info,
                "teacher": str(teacher_dir) if teacher_dir else None,
                "online_knn": online_knn_curve(run_dir),
            }
            print(f"[{name} seed {seed}] {json.dumps({k: v for k, v in pretrained.items() if k != 'validation_knn'})}")
            print(
                f"[{name} seed {seed}] random: {json.dumps({k: v for k, v in random.items() if k != 'validation_knn'})}"
            )
            print(f"[{name} seed {seed}] curve: {curve}", flush=True)

    print()
    print(
        f"CIFAR-10, kNN bank / probe training set: {args.bank_size} training images, queries: {args.query_size} test "
        f"images (class-balanced); kNN k={args.k}, T={args.temperature}; linear probe {args.linear_probe_epochs} epochs."
        " Accuracies in %, mean over seeds (per seed in brackets)."
    )
    print()
    print(markdown_table(results, args.seeds))
    print()
    for name in methods:
        for seed in args.seeds:
            run = runs[name][seed]
            teacher = f"; frozen teacher: {run['teacher']} (AutoModel via FrozenTeacher)" if run["teacher"] else ""
            print(
                f"- {name} seed {seed}: {run['steps']} steps x {run['batch_size']} images, "
                f"{run['cpu_minutes']:.1f} CPU-minutes (child user+sys), {run['wall_minutes']:.1f} wall-minutes{teacher}"
            )
    print()
    print("kNN top-1 (%) during pre-training (pooled / best intermediate of the final model):")
    for name in methods:
        for seed in args.seeds:
            curve = results[name][seed]["curve"]
            points = ", ".join(f"{p['step']}: {100 * p[POOLED]:.1f}/{100 * list(p.values())[-1]:.1f}" for p in curve)
            print(f"- {name} seed {seed}: {points}")
    if any(runs[name][seed]["online_knn"] for name in methods for seed in args.seeds):
        print()
        print("Online kNN top-1 (%) during pre-training (1000 training images as bank, 500 others as queries), loss:")
        for name in methods:
            for seed in args.seeds:
                points = ", ".join(
                    f"{p['step']}: {100 * p['knn_top1']:.1f} ({p['loss']})" for p in runs[name][seed]["online_knn"]
                )
                print(f"- {name} seed {seed}: {points}")
    output = work_dir / f"learning_results_{'-'.join(methods)}_seeds{'-'.join(map(str, args.seeds))}.json"
    output.write_text(json.dumps({"results": results, "runs": runs, "args": vars(args)}, indent=2, default=str))
    print(f"\nFull results: {output}")
    return results


if __name__ == "__main__":
    main()
