"""Conversion of original iTPN checkpoints: parity with the original code's outputs (../shared/parity/itpn), key
layouts of other sizes, error reporting and the command line."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import hf_unified_pretrain  # noqa: F401  (registers the Auto classes)
from hf_unified_pretrain.conversion import ConversionError
from hf_unified_pretrain.models.itpn import ITPNBackbone, ITPNConfig, ITPNForImageClassification, ITPNForPreTraining
from hf_unified_pretrain.models.itpn.convert_itpn_original_to_hf import (
    ORIGINAL_BUILDERS,
    config_from_original,
    convert_state_dict,
    main,
    model_class_for,
)
from tests.conftest import SHARED_ROOT, shared_path

ATOL, RTOL = 1e-5, 1e-4

# Fixture name -> original class; hidden fixtures of other sizes follow the same naming.
KIND_BY_PREFIX = (
    ("fast_itpn_cls", "fast_classifier"),
    ("itpn_pixel_mim", "pixel_mim"),
    ("itpn_clip_mim", "clip_mim"),
    ("itpn_seg_backbone", "seg_backbone"),
    ("itpn_det_backbone", "det_backbone"),
    ("itpn_cls", "classifier"),
)


def kind_of(fixture_name: str) -> str:
    return next(kind for prefix, kind in KIND_BY_PREFIX if fixture_name.startswith(prefix))


def fixture_names() -> list[str]:
    folder = SHARED_ROOT / "parity" / "itpn"
    names = sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []
    # Without ../shared the six known names still appear (and skip, or fail under CI=true, in `load_fixture`).
    return names or ["fast_itpn_cls_tiny", "itpn_clip_mim_tiny", "itpn_cls_tiny", "itpn_det_backbone_tiny",
                     "itpn_pixel_mim_tiny", "itpn_seg_backbone_tiny"]  # fmt: skip


def load_fixture(name: str) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict]:
    """(tensors, original state dict, original constructor kwargs incl. the norm_layer eps when recorded)."""
    tensors = load_file(shared_path("parity", "itpn", f"{name}.safetensors"))
    meta = json.loads(shared_path("parity", "itpn", f"{name}.json").read_text())
    state_dict = {k.removeprefix("state_dict."): v for k, v in tensors.items() if k.startswith("state_dict.")}
    kwargs = {k.removeprefix("config."): v for k, v in meta.items() if k.startswith("config.")}
    if "norm_layer_eps" in meta:
        kwargs["norm_layer_eps"] = meta["norm_layer_eps"]
    return tensors, state_dict, kwargs


def converted_model(name: str):
    tensors, state_dict, kwargs = load_fixture(name)
    kind = kind_of(name)
    config = config_from_original(kwargs, kind)
    model = model_class_for(config, kind)(config)
    model.load_state_dict(convert_state_dict(state_dict, config, kind), strict=True)
    return tensors, model.eval()


# ----------------------------------------------------------------------------------------------------------------
# Parity with the original implementation
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.shared_data
@pytest.mark.parametrize("name", fixture_names())
@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
def test_converted_model_reproduces_the_original_outputs(name, attn_implementation):
    tensors, model = converted_model(name)
    model.set_attn_implementation(attn_implementation)
    kind = kind_of(name)
    with torch.no_grad():
        if kind in ("classifier", "fast_classifier"):
            torch.testing.assert_close(model(tensors["x"]).logits, tensors["logits"], atol=ATOL, rtol=RTOL)

        elif kind in ("seg_backbone", "det_backbone"):
            # The original backbones interpolate the position embeddings to any input (the fixtures are not square).
            feature_maps = model(tensors["x"], interpolate_pos_encoding=True).feature_maps
            expected = [tensors[f"outs.{i}"] for i in range(sum(k.startswith("outs.") for k in tensors))]
            assert len(feature_maps) == len(expected)
            for ours, reference in zip(feature_maps, expected):
                torch.testing.assert_close(ours, reference, atol=ATOL, rtol=RTOL)

        elif kind == "pixel_mim":
            # The original drops the masked patches given by its `ids_keep` (in shuffled order) and marks them in
            # `mask` (1 = removed); ours takes the bool mask and keeps the visible patches in ascending order.
            mask = tensors["mask"].bool()
            assert torch.equal(mask, ~torch.zeros_like(mask).scatter(1, tensors["ids_keep"], True))
            output = model(tensors["x"], bool_masked_pos=mask)
            torch.testing.assert_close(output.logits, tensors["pred"], atol=ATOL, rtol=RTOL)
            torch.testing.assert_close(output.loss, tensors["loss"], atol=ATOL, rtol=RTOL)
            torch.testing.assert_close(output.losses["pixel"], tensors["loss"], atol=ATOL, rtol=RTOL)
            levels = model.itpn(tensors["x"], bool_masked_pos=mask).pyramid_features
            order = torch.argsort(tensors["ids_keep"], dim=1)  # original order -> ascending patch order
            # The original lists the levels coarsest first (strides 16, 8, 4); ours finest first.
            for index, ours in enumerate(reversed(levels)):
                reference = tensors[f"encoder_outs.{index}"]
                reference = torch.gather(reference, 1, order[:, :, None, None, None].expand_as(reference))
                torch.testing.assert_close(ours, reference, atol=ATOL, rtol=RTOL)

        else:  # clip_mim
            output = model(
                tensors["x"], bool_masked_pos=tensors["bool_masked_pos"], teacher_features=tensors["teacher_target"]
            )
            torch.testing.assert_close(output.logits, tensors["out_fpn"], atol=ATOL, rtol=RTOL)
            torch.testing.assert_close(output.aux_logits, tensors["out_aux"], atol=ATOL, rtol=RTOL)
            torch.testing.assert_close(output.loss, tensors["loss"], atol=ATOL, rtol=RTOL)


@pytest.mark.shared_data
def test_pixel_parity_needs_the_original_position_resampling():
    """The original resizes the position embeddings whenever it drops tokens; without that the outputs move."""
    tensors, model = converted_model("itpn_pixel_mim_tiny")
    model.config.resample_position_embeddings_on_drop = False
    with torch.no_grad():
        logits = model(tensors["x"], bool_masked_pos=tensors["mask"].bool()).logits
    assert (logits - tensors["pred"]).abs().max() > 1e-4


@pytest.mark.shared_data
def test_fixture_configs_follow_the_original_classes():
    _, _, kwargs = load_fixture("itpn_seg_backbone_tiny")
    seg = config_from_original(kwargs, "seg_backbone")
    assert (seg.layer_norm_eps, seg.backbone_layout, seg.position_embedding_grid_size) == (1e-5, "seg", 14)
    assert seg.out_features == ["stage1", "stage2", "stage3", "stage4"]
    _, _, kwargs = load_fixture("itpn_clip_mim_tiny")
    clip = config_from_original(kwargs, "clip_mim")
    assert (clip.pretraining_target, clip.resolved_aux_layer_index, clip.aux_layer_norm_eps) == ("clip", 6, 1e-5)
    assert (clip.layer_scale_init_value, clip.fpn_depth, clip.use_relative_position_bias) == (0.1, 1, True)
    _, _, kwargs = load_fixture("fast_itpn_cls_tiny")
    fast = config_from_original(kwargs, "fast_classifier")
    assert (fast.use_conv_mlp, fast.use_swiglu, fast.use_sub_ln, fast.use_mean_pooling) == (True, True, True, False)
    assert (fast.use_patch_norm, fast.layer_scale_init_value, fast.num_labels) == (False, 0.1, 10)


# ----------------------------------------------------------------------------------------------------------------
# Original key layouts of other sizes (written from the original classes' structure, checked against the fixtures)
# ----------------------------------------------------------------------------------------------------------------

PYRAMID_KINDS = ("pixel_mim", "clip_mim", "seg_backbone", "det_backbone")


def _mlp_block(prefix, dim, hidden, gamma=False, conv=False, sub_ln=False):
    shapes = {f"{prefix}.norm2.weight": (dim,), f"{prefix}.norm2.bias": (dim,)}
    shapes[f"{prefix}.mlp.fc1.weight"] = (hidden, dim, 1, 1) if conv else (hidden, dim)
    shapes[f"{prefix}.mlp.fc1.bias"] = (hidden,)
    shapes[f"{prefix}.mlp.fc2.weight"] = (dim, hidden, 1, 1) if conv else (dim, hidden)
    shapes[f"{prefix}.mlp.fc2.bias"] = (dim,)
    if sub_ln:
        shapes |= {f"{prefix}.mlp.ffn_ln.weight": (hidden,), f"{prefix}.mlp.ffn_ln.bias": (hidden,)}
    if gamma:
        shapes[f"{prefix}.gamma_2"] = (dim,)
    return shapes


def _attention_block(prefix, dim, hidden, heads, grid, rpe, gamma, fast=None):
    shapes = {f"{prefix}.{n}.{p}": (dim,) for n in ("norm1", "norm2") for p in ("weight", "bias")}
    if fast is None:
        shapes |= {f"{prefix}.attn.qkv.weight": (3 * dim, dim), f"{prefix}.attn.qkv.bias": (3 * dim,)}
    else:
        if fast["subln"]:
            shapes |= {f"{prefix}.attn.{n}_proj.weight": (dim, dim) for n in "qkv"}
        else:
            shapes[f"{prefix}.attn.qkv.weight"] = (3 * dim, dim)
        shapes |= {f"{prefix}.attn.q_bias": (dim,), f"{prefix}.attn.v_bias": (dim,)}
    shapes |= {f"{prefix}.attn.proj.weight": (dim, dim), f"{prefix}.attn.proj.bias": (dim,)}
    if rpe:
        shapes[f"{prefix}.attn.relative_position_bias_table"] = ((2 * grid - 1) ** 2, heads)
    if fast is not None and fast["naiveswiglu"]:
        shapes |= {f"{prefix}.mlp.w1.weight": (hidden, dim), f"{prefix}.mlp.w1.bias": (hidden,)}
        shapes |= {f"{prefix}.mlp.w2.weight": (hidden, dim), f"{prefix}.mlp.w2.bias": (hidden,)}
        shapes |= {f"{prefix}.mlp.w3.weight": (dim, hidden), f"{prefix}.mlp.w3.bias": (dim,)}
    else:
        shapes |= {f"{prefix}.mlp.fc1.weight": (hidden, dim), f"{prefix}.mlp.fc1.bias": (hidden,)}
        shapes |= {f"{prefix}.mlp.fc2.weight": (dim, hidden), f"{prefix}.mlp.fc2.bias": (dim,)}
    if fast is not None and fast["subln"]:
        shapes |= {f"{prefix}.mlp.ffn_ln.weight": (hidden,), f"{prefix}.mlp.ffn_ln.bias": (hidden,)}
    if gamma:
        shapes |= {f"{prefix}.gamma_1": (dim,), f"{prefix}.gamma_2": (dim,)}
    return shapes


def original_layout(kind: str, kw: dict) -> dict[str, tuple[int, ...]]:
    """Keys and shapes of the original class's state dict for constructor arguments `kw` (all given explicitly)."""
    dim, fpn, heads, grid = kw["embed_dim"], kw.get("fpn_dim"), kw["num_heads"], kw["img_size"] // 16
    dims = (dim // 4, dim // 2, dim)
    fast = kind == "fast_classifier"
    depth1, depth2 = (kw["depth_stage1"], kw["depth_stage2"]) if fast else (kw["mlp_depth1"], kw["mlp_depth2"])
    gamma = bool(kw.get("init_values"))
    shapes = {"patch_embed.proj.weight": (dims[0], 3, 4, 4), "patch_embed.proj.bias": (dims[0],)}
    if kw["patch_norm"]:
        shapes |= {"patch_embed.norm.weight": (dims[0],), "patch_embed.norm.bias": (dims[0],)}
    if fast:
        shapes["pos_embed"] = (1, grid * grid, dim)
    else:
        if kw["ape"]:
            shapes["absolute_pos_embed"] = (1, 196 if kind == "seg_backbone" else grid * grid, dim)
        if kw["rpe"]:
            shapes["relative_position_index"] = (grid * grid, grid * grid)
    index = 0
    for stage, depth in enumerate((depth1, depth2)):
        width = dims[stage]
        for _ in range(depth):
            hidden = int(width * kw["bridge_mlp_ratio"])
            shapes |= _mlp_block(f"blocks.{index}", width, hidden, gamma and not fast, fast, fast and kw["subln"])
            index += 1
        if fast:
            shapes |= {f"blocks.{index}.norm.weight": (width,), f"blocks.{index}.norm.bias": (width,)}
            shapes |= {f"blocks.{index}.reduction.weight": (2 * width, width, 2, 2)}
            shapes |= {f"blocks.{index}.reduction.bias": (2 * width,)}
        else:
            shapes |= {f"blocks.{index}.norm.weight": (4 * width,), f"blocks.{index}.norm.bias": (4 * width,)}
            shapes |= {f"blocks.{index}.reduction.weight": (2 * width, 4 * width)}
        index += 1
    hidden = int(dim * kw["mlp_ratio"])
    for _ in range(kw["depth"]):
        rpe = False if fast else kw["rpe"]
        shapes |= _attention_block(f"blocks.{index}", dim, hidden, heads, grid, rpe, gamma, kw if fast else None)
        index += 1

    if kind in PYRAMID_KINDS:
        fpn_hidden = int(fpn * kw["mlp_ratio"])
        if dim != fpn:
            shapes |= {"align_dim_16tofpn.weight": (fpn, dim), "align_dim_16tofpn.bias": (fpn,)}
        shapes |= {"align_dim_16to8.weight": (fpn, dims[1]), "align_dim_8to4.weight": (fpn, dims[0])}
        shapes |= {"split_16to8.norm.weight": (dim,), "split_16to8.norm.bias": (dim,)}
        shapes |= {"split_16to8.reduction.weight": (4 * fpn, dim)}
        shapes |= {"split_8to4.norm.weight": (fpn,), "split_8to4.norm.bias": (fpn,)}
        shapes |= {"split_8to4.reduction.weight": (4 * fpn, fpn)}
        for j in range(kw["fpn_depth"]):
            shapes |= _mlp_block(f"block_16to8.{j}", fpn, fpn_hidden) | _mlp_block(f"block_8to4.{j}", fpn, fpn_hidden)
        for j in range(3):
            shapes |= _mlp_block(f"fpn_modules.{j}", fpn, fpn_hidden)
    if kind in ("pixel_mim", "clip_mim"):
        out = kw["decoder_embed_dim"] if kind == "pixel_mim" else dim
        for level, side in enumerate((1, 2, 4)):
            shapes |= {f"decoder_embed.{level}.0.weight": (fpn,), f"decoder_embed.{level}.0.bias": (fpn,)}
            width = out // (side * side)
            shapes |= {f"decoder_embed.{level}.1.weight": (width, fpn), f"decoder_embed.{level}.1.bias": (width,)}
        shapes["mask_token"] = (1, 1, out)
    if kind == "pixel_mim":
        decoder = kw["decoder_embed_dim"]
        shapes["decoder_pos_embed"] = (1, grid * grid, decoder)
        for j in range(kw["decoder_depth"]):
            block = _attention_block(
                f"decoder_blocks.{j}", decoder, int(decoder * kw["mlp_ratio"]), 0, grid, False, False
            )
            shapes |= block
        shapes |= {"decoder_norm.weight": (decoder,), "decoder_norm.bias": (decoder,)}
        shapes |= {"decoder_pred.weight": (16 * 16 * 3, decoder), "decoder_pred.bias": (16 * 16 * 3,)}
    if kind == "clip_mim":
        teacher = kw["teacher_dim"]
        for head in ("lm_head", "lm_cls_head"):
            shapes |= {f"{head}.weight": (teacher, dim), f"{head}.bias": (teacher,)}
        for norm in ("norm", "norm_cls"):
            shapes |= {f"{norm}.weight": (dim,), f"{norm}.bias": (dim,)}
        for j in range(2):  # the auxiliary blocks always carry a rel-pos table (rpe=True by default)
            shapes |= _attention_block(f"cls_pt_layers.{j}", dim, hidden, heads, grid, True, gamma)
    if kind == "classifier":
        shapes |= {"fc_norm.weight": (dim,), "fc_norm.bias": (dim,)}
    if fast:
        norm = "fc_norm" if kw["use_mean_pooling"] else "norm"
        shapes |= {f"{norm}.weight": (dim,), f"{norm}.bias": (dim,)}
    if kind in ("classifier", "fast_classifier") and kw["num_classes"] > 0:
        shapes |= {"head.weight": (kw["num_classes"], dim), "head.bias": (kw["num_classes"],)}
    return shapes


def full_kwargs(kind: str, **kw) -> dict:
    """Constructor arguments with every architecture field explicit (as `original_layout` needs them)."""
    base = {"img_size": 64, "patch_size": 16, "embed_dim": 64, "depth": 2, "num_heads": 4, "mlp_ratio": 4.0,
            "bridge_mlp_ratio": 3.0, "patch_norm": True, "rpe": True, "ape": True}  # fmt: skip
    if kind == "fast_classifier":
        base |= {"depth_stage1": 1, "depth_stage2": 1, "patch_norm": False, "init_values": 0.1, "convmlp": True,
                 "subln": True, "naiveswiglu": True, "use_mean_pooling": False, "num_classes": 10}  # fmt: skip
    else:
        base |= {"mlp_depth1": 1, "mlp_depth2": 1}
    if kind in PYRAMID_KINDS:
        base |= {"fpn_dim": 32, "fpn_depth": 1}
    if kind == "pixel_mim":
        base |= {"decoder_embed_dim": 32, "decoder_depth": 1, "decoder_num_heads": 4, "num_outs": 3, "rpe": False}
    if kind == "clip_mim":
        base |= {"teacher_dim": 32, "num_outs": 3, "depth": 8, "init_values": 0.1}
    if kind == "seg_backbone":
        base |= {"num_outs": 4}
    if kind == "det_backbone":
        base |= {"num_outs": 5, "rpe": False}
    if kind == "classifier":
        base |= {"num_classes": 10, "num_outs": 1}
    return base | kw


def _as_constructor_kwargs(kind: str, kw: dict) -> dict:
    """The pixel classes take one `mlp_depth` for both bridge stages."""
    if kind == "pixel_mim":
        kw = {k: v for k, v in kw.items() if k not in ("mlp_depth1", "mlp_depth2")} | {"mlp_depth": kw["mlp_depth1"]}
    return kw


def random_state_dict(layout: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {key: torch.randn(shape, generator=generator) for key, shape in layout.items()}


@pytest.mark.shared_data
@pytest.mark.parametrize("name", fixture_names())
def test_the_layout_spec_matches_the_fixtures(name):
    """Validates `original_layout` on the originals' own state dicts before using it for other sizes."""
    _, state_dict, kwargs = load_fixture(name)
    kind = kind_of(name)
    explicit = full_kwargs(kind, **{k: v for k, v in kwargs.items() if k != "norm_layer_eps"})
    if kind in ("pixel_mim", "classifier") and "mlp_depth" in kwargs:
        explicit |= {"mlp_depth1": kwargs["mlp_depth"], "mlp_depth2": kwargs["mlp_depth"]}
    layout = original_layout(kind, explicit)
    assert {k: tuple(v.shape) for k, v in state_dict.items()} == layout


SIZES = [
    ("pixel_mim", {"fpn_depth": 2, "depth": 3, "mlp_depth1": 2, "mlp_depth2": 2}),
    ("pixel_mim", {"rpe": True, "fpn_dim": 64, "decoder_depth": 2}),  # fpn_dim == embed_dim: no align layer
    ("clip_mim", {"rpe": False, "fpn_depth": 2, "init_values": None, "depth": 12}),
    ("clip_mim", {"mlp_depth1": 3, "mlp_depth2": 2, "embed_dim": 128, "num_heads": 8, "teacher_dim": 48}),
    ("classifier", {"init_values": 0.1, "mlp_depth1": 2, "mlp_depth2": 3, "depth": 3, "num_classes": 0}),
    ("classifier", {"rpe": False, "ape": False, "img_size": 96}),
    ("fast_classifier", {"naiveswiglu": False, "subln": False, "depth_stage1": 2, "init_values": None}),
    ("fast_classifier", {"naiveswiglu": False, "subln": True, "mlp_ratio": 3.0, "depth": 3}),
    ("seg_backbone", {"num_outs": 5, "fpn_depth": 2, "init_values": 0.1, "rpe": False}),
    ("det_backbone", {"num_outs": 4, "rpe": True, "fpn_depth": 2, "depth": 3}),
]


@pytest.mark.parametrize(("kind", "changes"), SIZES)
def test_other_sizes_convert_and_load_strictly(kind, changes):
    kw = full_kwargs(kind, **changes)
    state_dict = random_state_dict(original_layout(kind, kw))
    config = config_from_original(_as_constructor_kwargs(kind, kw), kind)
    converted = convert_state_dict(state_dict, config, kind)
    model = model_class_for(config, kind)(config)
    result = model.load_state_dict(converted, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    # Every original tensor (minus derived buffers and unused auxiliary tables) reached the model with its values.
    used = {k for k in state_dict if not k.endswith("relative_position_index")}
    if kind == "clip_mim" and not kw["rpe"]:
        used = {k for k in used if not (k.startswith("cls_pt_layers") and "relative_position_bias_table" in k)}
    assert sum(v.numel() for v in converted.values()) >= sum(state_dict[k].numel() for k in used)
    with torch.no_grad():
        inputs = torch.randn(1, 3, kw["img_size"], kw["img_size"])
        if kind in ("pixel_mim", "clip_mim"):
            grid = (kw["img_size"] // 16) ** 2
            mask = torch.zeros(1, grid, dtype=torch.bool)
            mask[0, ::2] = True
            teacher = torch.randn(1, grid, kw.get("teacher_dim", 1))
            output = model(inputs, bool_masked_pos=mask, teacher_features=teacher)
            assert torch.isfinite(output.loss)
        else:
            output = model(inputs)
            values = output.logits if kind in ("classifier", "fast_classifier") else output.feature_maps[0]
            assert torch.isfinite(values).all()


def test_split_query_key_value_projections_fuse_exactly():
    """Fast-iTPN's q/k/v projections with q/v biases become one qkv layer with a zero key bias."""
    kw = full_kwargs("fast_classifier")
    state_dict = random_state_dict(original_layout("fast_classifier", kw))
    config = config_from_original(kw, "fast_classifier")
    converted = convert_state_dict(state_dict, config, "fast_classifier")
    prefix = "itpn.encoder.layers.0.attention.qkv"
    expected_weight = torch.cat([state_dict[f"blocks.4.attn.{n}_proj.weight"] for n in "qkv"])
    q_bias, v_bias = state_dict["blocks.4.attn.q_bias"], state_dict["blocks.4.attn.v_bias"]
    assert torch.equal(converted[f"{prefix}.weight"], expected_weight)
    assert torch.equal(converted[f"{prefix}.bias"], torch.cat([q_bias, torch.zeros_like(q_bias), v_bias]))


def test_conv_merge_becomes_an_equivalent_linear_merge():
    """C-MLP's 2x2 stride-2 merge convolution equals our per-position LayerNorm + linear on concatenated positions."""
    kw = full_kwargs("fast_classifier")
    state_dict = random_state_dict(original_layout("fast_classifier", kw))
    config = config_from_original(kw, "fast_classifier")
    model = ITPNForImageClassification(config).eval()
    model.load_state_dict(convert_state_dict(state_dict, config, "fast_classifier"))
    merge = model.itpn.embeddings.merge1
    tokens = torch.randn(2, 3, 4, 4, 16)  # (B, L, s, s, C)
    with torch.no_grad():
        ours = merge(tokens)
        image = merge.norm(tokens).permute(0, 1, 4, 2, 3).reshape(6, 16, 4, 4)
        weight, bias = state_dict["blocks.1.reduction.weight"], state_dict["blocks.1.reduction.bias"]
        conv = torch.nn.functional.conv2d(image, weight, bias, stride=2)
    torch.testing.assert_close(ours, conv.reshape(2, 3, 32, 2, 2).permute(0, 1, 3, 4, 2))


# ----------------------------------------------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------------------------------------------


def test_unknown_and_missing_keys_are_listed():
    kw = full_kwargs("det_backbone")
    state_dict = random_state_dict(original_layout("det_backbone", kw))
    config = config_from_original(kw, "det_backbone")
    extra = dict(state_dict, **{"head.weight": torch.zeros(3, 64)})
    with pytest.raises(ConversionError, match="head.weight") as info:
        convert_state_dict(extra, config, "det_backbone")
    assert info.value.unknown == ["head.weight"] and not info.value.missing
    missing = {k: v for k, v in state_dict.items() if k != "fpn_modules.1.mlp.fc1.bias"}
    with pytest.raises(ConversionError) as info:
        convert_state_dict(missing, config, "det_backbone")
    assert info.value.missing == ["itpn.pyramid.output_blocks.1.mlp.fc1.bias"] and not info.value.unknown


def test_a_config_of_the_wrong_depth_is_reported():
    kw = full_kwargs("pixel_mim", fpn_depth=2)
    state_dict = random_state_dict(original_layout("pixel_mim", kw))
    config = config_from_original(_as_constructor_kwargs("pixel_mim", {**kw, "fpn_depth": 1}), "pixel_mim")
    with pytest.raises(ConversionError, match=r"block_16to8\.1"):
        convert_state_dict(state_dict, config, "pixel_mim")


def test_shape_mismatches_are_listed():
    kw = full_kwargs("classifier")
    state_dict = random_state_dict(original_layout("classifier", kw))
    config = config_from_original({**kw, "num_classes": 7}, "classifier")
    with pytest.raises(ConversionError, match=r"classifier\.weight: checkpoint \(10, 64\) vs model \(7, 64\)") as info:
        convert_state_dict(state_dict, config, "classifier")
    assert info.value.mismatched == ["classifier.bias", "classifier.weight"]


@pytest.mark.parametrize(
    ("kind", "changes", "message"),
    [
        ("fast_classifier", {"convmlp": False}, "convmlp=True"),
        ("fast_classifier", {"cls_token": True}, "CLS"),
        ("fast_classifier", {"swiglu": True}, "xformers"),
        ("pixel_mim", {"num_outs": 2}, "num_outs=2"),
        ("seg_backbone", {"num_outs": 3}, "num_outs 4 or 5"),
        ("classifier", {"qk_scale": 0.5}, "qk_scale"),
        ("classifier", {"img_size": (64, 96)}, "square"),
    ],
)
def test_unsupported_original_arguments_are_rejected(kind, changes, message):
    with pytest.raises((NotImplementedError, ValueError), match=message):
        config_from_original(full_kwargs(kind, **changes), kind)


def test_unknown_kind_is_rejected():
    with pytest.raises(ValueError, match="Unknown kind"):
        config_from_original({}, "mae")


def test_builders_match_the_documented_presets():
    """The original builders' arguments give the same architectures as our named presets."""
    pairs = {
        "itpn_base_dec512d8b": "itpn-base-pixel",
        "itpn_large_dec512d8b": "itpn-large-pixel",
        "clip_tpn_base_3324_patch16_224": "itpn-base-clip",
        "fast_itpn_tiny_1112_patch16_224": "fast-itpn-tiny",
        "fast_itpn_base_3324_patch16_224": "fast-itpn-base",
    }
    fields = ("hidden_size", "stage1_depth", "stage2_depth", "num_hidden_layers", "num_attention_heads", "mlp_ratio",
              "use_relative_position_bias", "layer_scale_init_value", "use_conv_mlp", "use_swiglu")  # fmt: skip
    for builder, preset in pairs.items():
        kind, kwargs = ORIGINAL_BUILDERS[builder]
        converted = config_from_original(kwargs, kind)
        reference = ITPNConfig.from_preset(preset)
        assert {f: getattr(converted, f) for f in fields} == {f: getattr(reference, f) for f in fields}, builder


# ----------------------------------------------------------------------------------------------------------------
# Checkpoint files and the command line
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.shared_data
def test_command_line_writes_a_folder_the_auto_classes_load(tmp_path):
    from transformers import AutoImageProcessor, AutoModelForPreTraining

    from hf_unified_pretrain.cli import main as cli_main

    tensors, state_dict, kwargs = load_fixture("itpn_pixel_mim_tiny")
    torch.save({"model": {f"module.{k}": v for k, v in state_dict.items()}}, tmp_path / "checkpoint.pth")
    cli_main(["convert", "itpn", "--checkpoint", str(tmp_path / "checkpoint.pth"), "--output_dir",
              str(tmp_path / "out"), "--kind", "pixel_mim", "--original_kwargs", json.dumps(kwargs)])  # fmt: skip
    model = AutoModelForPreTraining.from_pretrained(tmp_path / "out").eval()
    assert isinstance(model, ITPNForPreTraining)
    with torch.no_grad():
        logits = model(tensors["x"], bool_masked_pos=tensors["mask"].bool()).logits
    torch.testing.assert_close(logits, tensors["pred"], atol=ATOL, rtol=RTOL)
    assert Path(tmp_path / "out" / "model.safetensors").is_file()
    assert AutoImageProcessor.from_pretrained(tmp_path / "out").crop_size == {"height": 64, "width": 64}
    # The pre-training folder also feeds the backbone (the pyramid is part of it) and the classifier.
    backbone = ITPNBackbone.from_pretrained(tmp_path / "out", out_features=["stage1", "stage3"])
    torch.testing.assert_close(
        backbone.itpn.pyramid.output_blocks[0].mlp.fc1.weight, model.itpn.pyramid.output_blocks[0].mlp.fc1.weight
    )


def test_command_line_drops_the_pyramid_leftovers_of_fast_itpn_files(tmp_path):
    kw = full_kwargs("fast_classifier")
    state_dict = random_state_dict(original_layout("fast_classifier", kw))
    state_dict |= {"mask_token": torch.zeros(1, 1, 64), "fpn_modules.0.norm2.weight": torch.ones(32)}
    save_file(state_dict, str(tmp_path / "fast.safetensors"))
    arguments = ["--checkpoint", str(tmp_path / "fast.safetensors"), "--output_dir", str(tmp_path / "out")]
    arguments += ["--kind", "fast_classifier", "--original_kwargs", json.dumps(kw), "--no_model_card"]
    with pytest.raises(ConversionError, match="mask_token"):
        main(arguments)
    main(arguments + ["--drop_keys", "^mask_token$", "^fpn_modules"])
    model = ITPNForImageClassification.from_pretrained(tmp_path / "out")
    assert model.config.num_labels == 10 and model.config.use_swiglu


def test_command_line_takes_the_saved_args_and_set_overrides_and_writes_processor_and_card(tmp_path):
    """A pixel pre-training checkpoint saved with its argparse `args` (as the original training script does)."""
    import argparse

    from transformers import AutoImageProcessor

    from hf_unified_pretrain.cards import card_metadata

    kw = full_kwargs("pixel_mim", img_size=96)
    state_dict = random_state_dict(original_layout("pixel_mim", kw))
    checkpoint = tmp_path / "checkpoint-399.pth"
    torch.save(
        {"model": state_dict, "epoch": 399, "args": argparse.Namespace(input_size=96, mask_ratio=0.75)}, checkpoint
    )
    out = tmp_path / "out"
    main(["--checkpoint", str(checkpoint), "--output_dir", str(out), "--kind", "pixel_mim",
          "--original_kwargs", json.dumps(_as_constructor_kwargs("pixel_mim", kw)),
          "--set", "drop_path_rate=0.1", "mask_ratio=0.6"])  # fmt: skip
    model = ITPNForPreTraining.from_pretrained(out)
    assert model.config.drop_path_rate == 0.1 and model.config.mask_ratio == 0.6
    assert torch.equal(model.decoder.predictor.weight, state_dict["decoder_pred.weight"])
    processor = AutoImageProcessor.from_pretrained(out)
    assert processor.crop_size == {"height": 96, "width": 96}
    assert processor.size["shortest_edge"] >= 96  # the resize never undercuts the crop
    assert card_metadata(out / "README.md")["license"] == "other"
    with pytest.raises(ValueError, match="no field 'drop_path'"):
        main(["--checkpoint", str(checkpoint), "--output_dir", str(out), "--kind", "pixel_mim",
              "--original_kwargs", json.dumps(_as_constructor_kwargs("pixel_mim", kw)), "--set", "drop_path=0.1"])  # fmt: skip


def test_saved_args_naming_an_original_builder_select_it():
    import argparse

    from hf_unified_pretrain.models.itpn.convert_itpn_original_to_hf import _original_kwargs

    flags = argparse.Namespace(arch=None, kind=None, original_kwargs='{"drop_path_rate": 0.2}', num_labels=None)
    kind, kwargs = _original_kwargs(flags, {"args": {"model": "fast_itpn_tiny_1112_patch16_224", "epoch": 3}})
    assert kind == "fast_classifier"
    assert kwargs == {**ORIGINAL_BUILDERS["fast_itpn_tiny_1112_patch16_224"][1], "drop_path_rate": 0.2}
    with pytest.raises(SystemExit, match="pass --arch"):
        _original_kwargs(flags, {"args": {"model": "some_other_model"}})


def test_package_command_line_shows_the_converter_usage(capsys):
    from hf_unified_pretrain.cli import main as cli_main

    with pytest.raises(SystemExit) as exit_info:
        cli_main(["convert", "itpn", "--help"])
    assert exit_info.value.code == 0
    usage = capsys.readouterr().out
    assert usage.startswith("usage: hf-unified-pretrain convert itpn")
    for flag in ("--checkpoint", "--output_dir", "--kind", "--set", "--arch", "--drop_keys", "--no_model_card"):
        assert flag in usage
