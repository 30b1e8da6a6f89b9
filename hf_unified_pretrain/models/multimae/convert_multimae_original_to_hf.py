"""Convert original MultiMAE checkpoints (EPFL-VILAB/MultiMAE) into this package's format.

Three original layouts are read:
- "pretrain": `MultiMAE` / `MultiViT` weights with the pre-training decoders (`output_adapters.{rgb,norm_rgb,depth,
  semseg}` = `SpatialOutputAdapter`), e.g. `multimae-b_98_rgb+-depth-semseg_1600e_multivit-afff3f8c.pth`;
  converted into `MultiMAEForPreTraining`;
- "multivit": `MultiViT` with fine-tuning adapters (`output_adapters.cls` = linear classifier,
  `output_adapters.semseg` = ConvNeXt adapter) or none; converted into the matching head class (or the bare model);
- "timm": the `multimae_to_vit` export (`cls_token`, `pos_embed` with a zero [CLS] row, `patch_embed.proj`,
  `blocks.*`, no final norm), RGB only, e.g. `multimae-b_98_rgb+-depth-semseg_1600e_timm-bafa5499.pth`.

The structure (modalities, their channels / classes / class-embedding width / stride, token grid, encoder and
decoder widths and depths) is read from the weights themselves; the original constructor arguments (or a
checkpoint's `args`) supply what weights cannot show (number of heads, MLP ratio), so other sizes convert alike.

Contract shared by every method's converter: `config_from_original(original_kwargs, kind, state_dict=None)`,
`convert_state_dict(original_state_dict, config)`, `main(argv=None)`.
"""

from __future__ import annotations

import argparse
import re
from typing import Any

import torch

from .configuration_multimae import NORM_RGB, ModalitySpec, MultiMAEConfig

KINDS = ("pretrain", "multivit", "timm")

# Encoder block keys (original sub-key -> ours), shared by encoder blocks and decoder self-attention blocks.
_BLOCK = {
    "norm1": "layernorm_before",
    "attn.qkv": "attention.qkv",
    "attn.proj": "attention.proj",
    "norm2": "layernorm_after",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
}


def _get(kwargs: dict[str, Any], *names: str, default: Any = None) -> Any:
    for name in names:
        for key in (name, f"config.{name}", f"hyperparams.{name}", f"args.{name}"):
            if key in kwargs and kwargs[key] is not None:
                return kwargs[key]
    return default


def _strip_wrapper(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if any(key.startswith("state_dict.") for key in state_dict):
        return {key[len("state_dict.") :]: value for key, value in state_dict.items() if key.startswith("state_dict.")}
    return dict(state_dict)


def detect_kind(state_dict: dict[str, torch.Tensor]) -> str:
    """ "timm" (ViT keys), "pretrain" (spatial decoders) or "multivit" (fine-tuning adapters or none)."""
    if "cls_token" in state_dict or any(key.startswith("blocks.") for key in state_dict):
        return "timm"
    if any(re.match(r"output_adapters\.[^.]+\.proj_context\.", key) for key in state_dict):
        return "pretrain"
    return "multivit"


def config_from_original(
    original_kwargs: dict[str, Any], kind: str = "pretrain", state_dict: dict[str, torch.Tensor] | None = None
) -> MultiMAEConfig:
    """Our config from the original constructor arguments (and, when given, the original weights' shapes).

    Args:
        original_kwargs: Constructor arguments of the original (`dim_tokens`, `depth`, `num_heads`, `mlp_ratio`,
            `qkv_bias`, `num_global_tokens`, decoder `dim`/`depth`/`heads`, ...) or a training run's args
            (`in_domains`, `out_domains`, `decoder_dim`, `decoder_depth`, `decoder_num_heads`, `patch_size`,
            `input_size`, `num_encoded_tokens`, `alphas`, `extra_norm_pix_loss`, `model`), flat or prefixed with
            `config.` / `args.`.
        kind: "pretrain", "multivit" or "timm" (see the module docstring).
        state_dict: Original weights; when given, modalities and sizes are read from them.

    Returns:
        A `MultiMAEConfig`.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}.")
    kwargs = dict(original_kwargs or {})
    model_name = str(_get(kwargs, "model", default=""))
    large = "large" in model_name
    fields: dict[str, Any] = {
        "hidden_size": int(_get(kwargs, "dim_tokens", "embed_dim", default=1024 if large else 768)),
        "num_hidden_layers": int(_get(kwargs, "depth", default=24 if large else 12)),
        "num_attention_heads": int(_get(kwargs, "num_heads", default=16 if large else 12)),
        "mlp_ratio": float(_get(kwargs, "mlp_ratio", default=4.0)),
        "qkv_bias": bool(_get(kwargs, "qkv_bias", default=True)),
        "num_global_tokens": int(_get(kwargs, "num_global_tokens", default=1)),
        "patch_size": int(_get(kwargs, "patch", "patch_size", default=16)),
        "image_size": int(_get(kwargs, "img", "input_size", "image_size", default=224)),
        "decoder_hidden_size": int(_get(kwargs, "decoder.dim", "decoder_dim", default=256)),
        "decoder_num_hidden_layers": int(_get(kwargs, "decoder.depth", "decoder_depth", default=2)),
        "decoder_num_attention_heads": int(_get(kwargs, "decoder.heads", "decoder_num_heads", default=8)),
        "dirichlet_alpha": float(_get(kwargs, "alphas", default=1.0)),
        "num_visible_tokens": int(_get(kwargs, "num_encoded_tokens", default=98)),
        "drop_path_rate": float(_get(kwargs, "drop_path", "drop_path_rate", default=0.0)),
    }
    in_domains = _get(kwargs, "in_domains", default="rgb-depth-semseg")
    out_domains = _get(kwargs, "out_domains", default="rgb-depth-semseg")
    in_domains = in_domains.split("-") if isinstance(in_domains, str) else list(in_domains)
    out_domains = out_domains.split("-") if isinstance(out_domains, str) else list(out_domains)
    semseg_classes = int(_get(kwargs, "semseg_classes", "num_classes_semseg", default=133))
    modalities = {
        "rgb": ModalitySpec("rgb", "image", num_channels=3),
        "depth": ModalitySpec("depth", "depth", num_channels=1),
        "semseg": ModalitySpec("semseg", "segmentation", num_classes=semseg_classes, stride_level=4),
    }
    extra_norm = bool(_get(kwargs, "extra_norm_pix_loss", default=True))
    num_labels = None

    heads_given = _get(kwargs, "num_heads") is not None
    decoder_heads_given = _get(kwargs, "decoder.heads", "decoder_num_heads") is not None
    if state_dict is not None:
        state_dict = _strip_wrapper(state_dict)
        if kind == "timm":
            fields["hidden_size"] = state_dict["cls_token"].shape[-1]
            fields["num_hidden_layers"] = 1 + max(int(k.split(".")[1]) for k in state_dict if k.startswith("blocks."))
            proj = state_dict["patch_embed.proj.weight"]
            fields["patch_size"] = proj.shape[-1]
            grid = round((state_dict["pos_embed"].shape[1] - 1) ** 0.5)
            fields["image_size"] = grid * fields["patch_size"]
            in_domains, out_domains, extra_norm = ["rgb"], [], False
            modalities = {"rgb": ModalitySpec("rgb", "image", num_channels=proj.shape[1])}
            if "head.weight" in state_dict:
                num_labels = state_dict["head.weight"].shape[0]
        else:
            fields["hidden_size"] = state_dict["global_tokens"].shape[-1]
            fields["num_global_tokens"] = state_dict["global_tokens"].shape[1]
            fields["num_hidden_layers"] = 1 + max(int(k.split(".")[1]) for k in state_dict if k.startswith("encoder."))
            in_domains = sorted(
                {k.split(".")[1] for k in state_dict if k.startswith("input_adapters.")},
                key=lambda name: ["rgb", "depth", "semseg"].index(name) if name in ("rgb", "depth", "semseg") else 9,
            )
            grid_h = grid_w = None
            stride_by_patch: dict[str, int] = {}
            for name in in_domains:
                pos = state_dict[f"input_adapters.{name}.pos_emb"]
                grid_h, grid_w = pos.shape[-2:]
                proj = state_dict[f"input_adapters.{name}.proj.weight"]
                stride_by_patch[name] = proj.shape[-1]
                if f"input_adapters.{name}.class_emb.weight" in state_dict:
                    classes, class_dim = state_dict[f"input_adapters.{name}.class_emb.weight"].shape
                    modalities[name] = ModalitySpec(
                        name, "segmentation", num_classes=classes, class_embed_dim=class_dim
                    )
                else:
                    kind_of = "depth" if proj.shape[1] == 1 and name == "depth" else "image"
                    modalities[name] = ModalitySpec(name, kind_of, num_channels=proj.shape[1])
            patch = max(stride_by_patch.values())
            fields["patch_size"] = patch
            fields["image_size"] = [int(grid_h) * patch, int(grid_w) * patch]
            for name, size in stride_by_patch.items():
                modalities[name].stride_level = patch // size
            decoders = sorted(
                {k.split(".")[1] for k in state_dict if re.match(r"output_adapters\.[^.]+\.proj_context", k)}
            )
            extra_norm = NORM_RGB in decoders
            out_domains = [name for name in ["rgb", "depth", "semseg"] if name in decoders]
            out_domains += [name for name in decoders if name not in out_domains and name != NORM_RGB]
            for task in out_domains:
                out_dim = state_dict[f"output_adapters.{task}.out_proj.weight"].shape[0]
                if task not in modalities:
                    modalities[task] = ModalitySpec(task, "image", num_channels=3)
                spec = modalities[task]
                channels = spec.num_classes if spec.kind == "segmentation" else spec.num_channels
                patch_area = out_dim // channels
                stride = patch // round(patch_area**0.5)
                spec.stride_level = stride
            if decoders:
                first = decoders[0]
                fields["decoder_hidden_size"] = state_dict[f"output_adapters.{first}.proj_context.weight"].shape[0]
                fields["decoder_num_hidden_layers"] = len(
                    {
                        k.split(".")[3]
                        for k in state_dict
                        if k.startswith(f"output_adapters.{first}.decoder_transformer.")
                    }
                )
                fields["decoder_use_cross_attention"] = f"output_adapters.{first}.decoder.q.weight" in state_dict
            if "output_adapters.cls.head.weight" in state_dict:
                num_labels = state_dict["output_adapters.cls.head.weight"].shape[0]
            seg_head = [k for k in state_dict if re.match(r"output_adapters\.[^.]+\.final_layer\.weight", k)]
            if seg_head:
                prefix = seg_head[0].rsplit(".", 2)[0]
                final = state_dict[f"{prefix}.final_layer.weight"]
                num_labels = final.shape[0]
                class_dim = final.shape[1]
                embed_dim, in_dim = state_dict[f"{prefix}.proj_dec.weight"].shape
                fields["segmentation_head_embed_dim"] = embed_dim
                fields["segmentation_head_preds_per_patch"] = embed_dim // class_dim
                fields["segmentation_head_depth"] = len(
                    {k.split(".")[3] for k in state_dict if k.startswith(f"{prefix}.blocks.")}
                )
                if f"{prefix}.blocks.0.gamma" in state_dict:
                    fields["segmentation_head_layer_scale_init_value"] = 1e-6
                main = _get(kwargs, "decoder_main_tasks", default="rgb")
                main = main.split("-") if isinstance(main, str) else list(main)
                if len(main) * fields["hidden_size"] != in_dim:
                    main = in_domains[: in_dim // fields["hidden_size"]]
                fields["head_modalities"] = main
    if state_dict is not None:
        # MLP widths and biases are visible in the weights: they win over the arguments.
        prefix = "blocks.0." if kind == "timm" else "encoder.0."
        if f"{prefix}mlp.fc1.weight" in state_dict:
            fields["mlp_ratio"] = state_dict[f"{prefix}mlp.fc1.weight"].shape[0] / fields["hidden_size"]
            fields["qkv_bias"] = f"{prefix}attn.qkv.bias" in state_dict
        decoder_fc1 = [k for k in state_dict if re.match(r"output_adapters\.[^.]+\.mlp\.fc1\.weight$", k)]
        if decoder_fc1 and kind != "timm":
            fields["decoder_mlp_ratio"] = state_dict[decoder_fc1[0]].shape[0] / fields["decoder_hidden_size"]
    use_mean_pooling = _get(kwargs, "use_mean_pooling")
    if use_mean_pooling is not None:
        fields["use_mean_pooling"] = bool(use_mean_pooling)
    # Weights do not show the number of heads: without arguments, assume ViT's 64-d (decoder: 32-d) heads.
    if not heads_given:
        fields["num_attention_heads"] = max(1, fields["hidden_size"] // 64)
    if not decoder_heads_given:
        fields["decoder_num_attention_heads"] = max(1, fields["decoder_hidden_size"] // 32)
    total_tokens = (
        len(in_domains)
        * (
            fields["image_size"] // fields["patch_size"]
            if isinstance(fields["image_size"], int)
            else fields["image_size"][0] // fields["patch_size"]
        )
        ** 2
    )
    fields["num_visible_tokens"] = min(fields["num_visible_tokens"], max(1, total_tokens))
    config = MultiMAEConfig(
        modalities=[modalities[name].to_dict() for name in dict.fromkeys(in_domains + out_domains)],
        input_modalities=in_domains,
        output_modalities=out_domains,
        extra_norm_rgb_output=extra_norm and any(modalities[n].kind == "image" for n in in_domains + out_domains),
        **fields,
        **({"num_labels": num_labels} if num_labels else {}),
    )
    return config


def convert_state_dict(
    original_state_dict: dict[str, torch.Tensor], config: MultiMAEConfig
) -> dict[str, torch.Tensor]:
    """Maps original keys (MultiMAE/MultiViT or timm layout) to ours (`multimae.*`, `decoders.*`, heads).

    Raises:
        KeyError: listing every original key that has no counterpart.
    """
    state_dict = _strip_wrapper(original_state_dict)
    converted: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    if detect_kind(state_dict) == "timm":
        grid = config.grid_size
        for key, value in state_dict.items():
            if key == "cls_token":
                converted["multimae.global_tokens"] = value
            elif key == "pos_embed":
                table = value[:, 1:].reshape(1, grid[0], grid[1], -1).permute(0, 3, 1, 2)
                converted["multimae.input_adapters.rgb.position_embeddings"] = table.contiguous()
            elif key.startswith("patch_embed.proj."):
                converted["multimae.input_adapters.rgb.projection." + key.split(".")[-1]] = value
            elif (match := re.match(r"blocks\.(\d+)\.(.+)\.(weight|bias)$", key)) and match.group(2) in _BLOCK:
                index, part, leaf = match.groups()
                converted[f"multimae.encoder.layer.{index}.{_BLOCK[part]}.{leaf}"] = value
            elif key.startswith("head."):
                converted["classifier." + key.split(".")[-1]] = value
            elif key.startswith(("fc_norm.", "norm.")):
                converted["layernorm." + key.split(".")[-1]] = value
            else:
                unknown.append(key)
    else:
        for key, value in state_dict.items():
            new = _convert_multivit_key(key, state_dict)
            if new is None:
                unknown.append(key)
            else:
                converted[new] = value
    if unknown:
        raise KeyError(f"Original keys without a counterpart in MultiMAE: {sorted(unknown)}")
    return converted


def _convert_multivit_key(key: str, state_dict: dict[str, torch.Tensor]) -> str | None:
    if key == "global_tokens":
        return "multimae.global_tokens"
    match = re.match(r"input_adapters\.([^.]+)\.(pos_emb|proj\.weight|proj\.bias|class_emb\.weight)$", key)
    if match:
        name, part = match.groups()
        part = {"pos_emb": "position_embeddings", "class_emb.weight": "class_embeddings.weight"}.get(
            part, part.replace("proj.", "projection.")
        )
        return f"multimae.input_adapters.{name}.{part}"
    match = re.match(r"encoder\.(\d+)\.(.+)\.(weight|bias)$", key)
    if match and match.group(2) in _BLOCK:
        index, part, leaf = match.groups()
        return f"multimae.encoder.layer.{index}.{_BLOCK[part]}.{leaf}"
    match = re.match(r"output_adapters\.([^.]+)\.(.+)$", key)
    if not match:
        return None
    task, rest = match.groups()
    if f"output_adapters.{task}.proj_context.weight" in state_dict:  # pre-training decoder
        simple = {
            "pos_emb": "position_embeddings",
            "mask_token": "mask_token",
        }
        if rest in simple:
            return f"decoders.{task}.{simple[rest]}"
        if re.match(
            r"(proj_context|context_norm|query_norm|out_norm|out_proj|mlp\.fc1|mlp\.fc2)\.(weight|bias)$", rest
        ):
            return f"decoders.{task}.{rest}"
        if m := re.match(r"task_embeddings\.([^.]+)$", rest):
            return f"decoders.{task}.task_embeddings.{m.group(1)}"
        if m := re.match(r"decoder\.(q|kv|proj)\.(weight|bias)$", rest):
            return f"decoders.{task}.cross_attention.{m.group(1)}.{m.group(2)}"
        if (m := re.match(r"decoder_transformer\.(\d+)\.(.+)\.(weight|bias)$", rest)) and m.group(2) in _BLOCK:
            return f"decoders.{task}.layers.{m.group(1)}.{_BLOCK[m.group(2)]}.{m.group(3)}"
        return None
    if m := re.match(r"(norm|head)\.(weight|bias)$", rest):  # linear classification adapter
        return f"{'layernorm' if m.group(1) == 'norm' else 'classifier'}.{m.group(2)}"
    if re.match(
        r"(proj_dec\.(weight|bias)|final_layer\.(weight|bias)|blocks\.\d+\.(dwconv|norm|pwconv1|pwconv2)\.(weight|bias)|blocks\.\d+\.gamma)$",
        rest,
    ):
        return f"segmentation_head.{rest}"
    return None


def model_class_for(config: MultiMAEConfig, converted: dict[str, torch.Tensor]):
    """The class whose state dict the converted keys fill."""
    from .modeling_multimae import (
        MultiMAEForImageClassification,
        MultiMAEForPreTraining,
        MultiMAEForSemanticSegmentation,
        MultiMAEModel,
    )

    if any(key.startswith("decoders.") for key in converted):
        return MultiMAEForPreTraining
    if any(key.startswith("segmentation_head.") for key in converted):
        return MultiMAEForSemanticSegmentation
    if any(key.startswith("classifier.") for key in converted):
        return MultiMAEForImageClassification
    return MultiMAEModel


def load_converted(
    original_state_dict: dict[str, torch.Tensor],
    original_kwargs: dict[str, Any] | None = None,
    kind: str | None = None,
):
    """Builds the matching model class with the converted weights loaded strictly. Returns `(model, config)`."""
    state_dict = _strip_wrapper(original_state_dict)
    kind = kind or detect_kind(state_dict)
    config = config_from_original(original_kwargs or {}, kind, state_dict=state_dict)
    converted = convert_state_dict(state_dict, config)
    model_class = model_class_for(config, converted)
    model = model_class(config)
    if model_class.__name__ == "MultiMAEModel":
        converted = {key[len("multimae.") :]: value for key, value in converted.items()}
    missing, unexpected = model.load_state_dict(converted, strict=False)
    if missing or unexpected:
        raise KeyError(
            f"Converted checkpoint does not fit {model_class.__name__}: missing {missing}, unexpected {unexpected}"
        )
    return model.eval(), config


def main(argv: list[str] | None = None):
    """`hf-unified-pretrain convert multimae --checkpoint X --output_dir Y [--kind K] [--set field=value ...]`.

    The layout is detected from the weights unless `--kind` is given; the class written follows the weights
    (pre-training decoders -> `MultiMAEForPreTraining`, ConvNeXt adapter -> `MultiMAEForSemanticSegmentation`,
    linear adapter -> `MultiMAEForImageClassification`, else `MultiMAEModel`). The number of heads is not visible in
    the weights: it comes from the checkpoint's `args` (`num_heads`, `decoder_num_heads`), else 64-d heads are
    assumed (768 -> 12, decoder 256 -> 8); `--set num_attention_heads=... decoder_num_attention_heads=...` fixes it.
    """
    from ...conversion import check_converted_keys, converter_main, load_original_checkpoint

    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--checkpoint")
    known, _ = parser.parse_known_args(argv)
    original_state_dict = {}
    if known.checkpoint:
        original_state_dict = _strip_wrapper(load_original_checkpoint(known.checkpoint)[0])

    def original_kwargs(args, extras):
        kwargs = {}
        for key in ("config", "hyperparams", "args"):
            if isinstance(extras.get(key), dict):
                kwargs = dict(extras[key])
                break
        return detect_kind(original_state_dict), kwargs

    def build_config(kwargs, kind="pretrain"):
        return config_from_original(kwargs, kind, state_dict=original_state_dict)

    def choose_class(config, kind, converted, args):
        return model_class_for(config, converted)

    def load_weights(model, converted, args):
        if type(model).__name__ == "MultiMAEModel":
            converted = {key[len("multimae.") :]: value for key, value in converted.items()}
        check_converted_keys(converted, model.state_dict())
        model.load_state_dict(converted, strict=True)

    return converter_main(
        "multimae",
        argv,
        build_config,
        convert_state_dict,
        kinds=KINDS,
        original_kwargs=original_kwargs,
        model_class=choose_class,
        load_weights=load_weights,
    )


if __name__ == "__main__":
    main()
