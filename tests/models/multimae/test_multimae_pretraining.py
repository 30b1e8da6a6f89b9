"""MultiMAE behaviour: Dirichlet masking through the model, token dropping, losses by hand, gradients, subsets of
modalities, bad input, config round trip, image processor for every modality, heads (UperNet, DPT)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from huggingface_hub.errors import StrictDataclassError

from hf_unified_pretrain.masking import dirichlet_multimodal_mask, mask_to_ids
from hf_unified_pretrain.models.multimae import (
    ModalitySpec,
    MultiMAEBackbone,
    MultiMAEConfig,
    MultiMAEForImageClassification,
    MultiMAEForPreTraining,
    MultiMAEForSemanticSegmentation,
    MultiMAEImageProcessor,
    MultiMAEModel,
)
from hf_unified_pretrain.objectives.multimodal import masked_dense_loss, normalize_dense_patches, standardize_depth

BATCH, IMAGE, PATCH, CLASSES = 3, 32, 8, 5
GRID = IMAGE // PATCH
N = GRID * GRID


def tiny_config(**overrides) -> MultiMAEConfig:
    return MultiMAEConfig.from_preset("tiny", **overrides)


def inputs(batch: int = BATCH, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {
        "rgb": torch.randn(batch, 3, IMAGE, IMAGE, generator=generator),
        "depth": torch.randn(batch, 1, IMAGE, IMAGE, generator=generator),
        "semseg": torch.randint(0, CLASSES, (batch, IMAGE // 4, IMAGE // 4), generator=generator),
    }


def masks_with_visible(counts: dict[str, list[int]]) -> dict[str, torch.Tensor]:
    """Per-modality masks keeping the first `counts[name][b]` tokens of sample b visible."""
    out = {}
    for name, per_sample in counts.items():
        mask = torch.ones(len(per_sample), N, dtype=torch.bool)
        for row, count in enumerate(per_sample):
            mask[row, (torch.arange(count) * 5 + row) % N] = False
        out[name] = mask
    return out


# ---- config -------------------------------------------------------------------------------------------------------


def test_config_json_round_trip_keeps_typed_modalities(tmp_path):
    config = tiny_config(dirichlet_alpha=[0.5, 1.0, 2.0], loss_weights={"depth": 2.0, "norm_rgb": 0.5})
    config.save_pretrained(tmp_path)
    reloaded = MultiMAEConfig.from_pretrained(tmp_path)
    assert reloaded.modalities == config.modalities
    assert reloaded.modality("semseg") == ModalitySpec(
        "semseg", "segmentation", num_classes=CLASSES, stride_level=4, class_embed_dim=64
    )
    assert reloaded.decoder_tasks == {"rgb": "rgb", "depth": "depth", "semseg": "semseg", "norm_rgb": "rgb"}
    assert reloaded.alphas_for(["semseg", "rgb"]) == [2.0, 0.5]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"input_modalities": ["rgb", "normals"]}, "unknown modalities"),
        ({"loss_weights": {"edges": 1.0}}, "pre-training tasks"),
        ({"dirichlet_alpha": [1.0, 1.0]}, "one value per input modality"),
        ({"modalities": [{"name": "semseg", "kind": "segmentation", "num_classes": 300}]}, "ignore_index=255"),
        ({"modalities": [{"name": "depth", "kind": "depth", "num_channels": 3}]}, "num_channels=1"),
        ({"num_visible_tokens": None, "mask_ratio": None}, "num_visible_tokens"),
    ],
)
def test_config_rejects_inconsistent_settings(overrides, message):
    with pytest.raises((ValueError, StrictDataclassError), match=message):
        tiny_config(**overrides)


# ---- masking through the model -----------------------------------------------------------------------------------


def test_dirichlet_masks_keep_the_exact_budget_and_are_reproducible():
    model = MultiMAEForPreTraining(tiny_config(num_visible_tokens=10)).eval()
    generate = model.mask_generator({"rgb": N, "depth": N, "semseg": N})
    first = generate(64, generator=torch.Generator().manual_seed(3))
    second = generate(64, generator=torch.Generator().manual_seed(3))
    visible = sum((~mask).sum(dim=1) for mask in first.values())
    assert torch.all(visible == 10)
    assert all(torch.equal(first[name], second[name]) for name in first)
    with torch.no_grad():
        outputs = model(modalities=inputs(), bool_masked_pos={k: v[:BATCH] for k, v in first.items()})
    assert outputs.bool_masked_pos["depth"].shape == (BATCH, N)


def test_dirichlet_split_follows_the_concentration():
    """E[share of modality i] = alpha_i / sum(alpha): with alpha (0.5, 1, 2.5) the mean shares are 1/8, 1/4, 5/8."""
    masks = dirichlet_multimodal_mask(
        {"rgb": 64, "depth": 64, "semseg": 64},
        32,
        4000,
        alpha=[0.5, 1.0, 2.5],
        generator=torch.Generator().manual_seed(0),
    )
    shares = torch.stack([(~masks[name]).sum(dim=1).float() / 32 for name in ("rgb", "depth", "semseg")], dim=1)
    torch.testing.assert_close(shares.mean(0), torch.tensor([0.125, 0.25, 0.625]), atol=0.015, rtol=0)
    # Dirichlet variance of the first share: a(a0 - a) / (a0^2 (a0 + 1)) = 0.5 * 3.5 / (16 * 5) = 0.021875
    assert abs(shares[:, 0].var().item() - 0.021875) < 0.004
    # A small concentration makes the split uneven: many samples give (almost) all tokens to one modality.
    uneven = dirichlet_multimodal_mask(
        {"rgb": 64, "depth": 64}, 32, 2000, alpha=0.1, generator=torch.Generator().manual_seed(1)
    )
    rgb_share = (~uneven["rgb"]).sum(dim=1).float() / 32
    assert ((rgb_share < 0.1) | (rgb_share > 0.9)).float().mean() > 0.6


def test_encoder_sees_only_the_visible_tokens_plus_global_tokens_last():
    config = tiny_config(num_global_tokens=2)
    model = MultiMAEForPreTraining(config).eval()
    masks = masks_with_visible({"rgb": [3, 1, 5], "depth": [4, 6, 2], "semseg": [2, 2, 2]})
    with torch.no_grad():
        outputs = model(modalities=inputs(), bool_masked_pos=masks, output_hidden_states=True)
    assert outputs.hidden_states[-1].shape == (BATCH, 9 + 2, config.hidden_size)
    encoded = model.multimae(modalities=inputs(), bool_masked_pos=masks)
    torch.testing.assert_close(
        encoded.last_hidden_state[:, -2:],
        model.multimae(modalities=inputs(), bool_masked_pos=masks).last_hidden_state[:, -2:],
    )
    # Masked tokens cannot leak: changing masked RGB pixels leaves every prediction unchanged.
    changed = inputs()
    rgb_mask = masks["rgb"].reshape(BATCH, GRID, GRID).repeat_interleave(PATCH, 1).repeat_interleave(PATCH, 2)
    changed["rgb"] = torch.where(rgb_mask[:, None], torch.randn_like(changed["rgb"]), changed["rgb"])
    with torch.no_grad():
        again = model(modalities=changed, bool_masked_pos=masks)
    for task in outputs.logits:
        torch.testing.assert_close(again.logits[task], outputs.logits[task])


def test_masked_encoder_embeds_only_kept_patches_equal_to_gathering_the_full_embedding():
    # Per-sample splits differ across modalities (one sample keeps no semseg token), grid is non-square, an ignored
    # label sits in a kept semseg patch: the kept-patch path must give the same tokens and the same adapter gradients
    # as embedding everything and gathering.
    config = tiny_config()
    model = MultiMAEModel(config).eval()
    height, width = IMAGE, IMAGE + 2 * PATCH
    generator = torch.Generator().manual_seed(3)
    data = {
        "rgb": torch.randn(BATCH, 3, height, width, generator=generator),
        "depth": torch.randn(BATCH, 1, height, width, generator=generator),
        "semseg": torch.randint(0, CLASSES, (BATCH, height // 4, width // 4), generator=generator),
    }
    data["semseg"][:, :2, :2] = 255
    count = (height // PATCH) * (width // PATCH)
    keep = {
        "rgb": [[0, 3, 7], [1], [5, 6, 9, 11]],
        "depth": [[2, 4], [0, 8, 10, 11], [1, 2, 23]],
        "semseg": [[0, 9], [3, 17], []],
    }
    masks = {name: torch.ones(BATCH, count, dtype=torch.bool) for name in keep}
    for name, rows in keep.items():
        for row, ids in enumerate(rows):
            masks[name][row, ids] = False
    concatenated = model.concat_mask(masks, data)
    ids_keep = mask_to_ids(concatenated).ids_keep

    kept = model.embed_visible(data, ids_keep)
    full = torch.cat([model.input_adapters[name](values) for name, values in data.items()], dim=1)
    gathered = full.gather(1, ids_keep[..., None].expand(-1, -1, full.shape[-1]))
    torch.testing.assert_close(kept, gathered, atol=1e-5, rtol=1e-4)

    weights = torch.randn(kept.shape, generator=generator)
    adapters = list(model.input_adapters.parameters())
    adapters = [parameter for parameter in adapters if parameter.requires_grad]
    kept_grads = torch.autograd.grad((model.embed_visible(data, ids_keep) * weights).sum(), adapters)
    gathered = torch.cat([model.input_adapters[name](values) for name, values in data.items()], dim=1)
    gathered = gathered.gather(1, ids_keep[..., None].expand(-1, -1, full.shape[-1]))
    full_grads = torch.autograd.grad((gathered * weights).sum(), adapters)
    for kept_grad, full_grad in zip(kept_grads, full_grads):
        torch.testing.assert_close(kept_grad, full_grad, atol=1e-5, rtol=1e-4)
    assert all(grad.abs().sum() > 0 for grad in kept_grads)


def test_unequal_visible_counts_are_rejected_with_the_fix():
    model = MultiMAEForPreTraining(tiny_config()).eval()
    masks = masks_with_visible({"rgb": [3, 4, 5], "depth": [4, 4, 4], "semseg": [2, 2, 2]})
    with pytest.raises(ValueError, match="same number of tokens"):
        model(modalities=inputs(), bool_masked_pos=masks)


# ---- losses --------------------------------------------------------------------------------------------------------


def test_losses_match_a_hand_computation():
    model = MultiMAEForPreTraining(tiny_config(loss_weights={"depth": 2.0, "semseg": 0.5})).eval()
    data = inputs()
    data["semseg"][0, :2, :2] = 255  # ignored pixels
    masks = masks_with_visible({"rgb": [4, 4, 4], "depth": [4, 4, 4], "semseg": [4, 4, 4]})
    with torch.no_grad():
        outputs = model(modalities=data, bool_masked_pos=masks)

    def pixel_mask(mask, patch):
        return mask.reshape(BATCH, GRID, GRID).repeat_interleave(patch, 1).repeat_interleave(patch, 2).float()

    def reduce(per_pixel, weights):
        return ((per_pixel * weights).flatten(1).sum(1) / weights.flatten(1).sum(1)).mean()

    rgb_weights = pixel_mask(masks["rgb"], PATCH)
    expected_rgb = reduce(((outputs.logits["rgb"] - data["rgb"]) ** 2).mean(1), rgb_weights)
    patches = data["rgb"].unfold(2, PATCH, PATCH).unfold(3, PATCH, PATCH)  # B, C, h, w, p, p
    mean = patches.mean(dim=(1, 4, 5), keepdim=True)
    std = torch.sqrt(patches.var(dim=(1, 4, 5), keepdim=True) + 1e-6)
    normalized = ((patches - mean) / std).permute(0, 1, 2, 4, 3, 5).reshape(BATCH, 3, IMAGE, IMAGE)
    expected_norm = reduce(((outputs.logits["norm_rgb"] - normalized) ** 2).mean(1), rgb_weights)
    expected_depth = reduce((outputs.logits["depth"] - data["depth"]).abs().mean(1), pixel_mask(masks["depth"], PATCH))
    labels = data["semseg"]
    ce = F.cross_entropy(outputs.logits["semseg"], labels.clamp(max=CLASSES - 1), reduction="none")
    semseg_weights = pixel_mask(masks["semseg"], 2) * (labels != 255).float()
    expected_semseg = reduce(ce, semseg_weights)
    expected = {"rgb": expected_rgb, "norm_rgb": expected_norm, "depth": expected_depth, "semseg": expected_semseg}
    for task, value in expected.items():
        torch.testing.assert_close(outputs.losses[task], value, msg=task)
    total = expected_rgb + expected_norm + 2.0 * expected_depth + 0.5 * expected_semseg
    torch.testing.assert_close(outputs.loss, total)


def test_depth_standardisation_trims_outliers_and_masks_invalid_pixels():
    generator = torch.Generator().manual_seed(0)
    depth = torch.rand(2, 1, 10, 10, generator=generator) * 5 + 1
    depth[0, 0, 0, :3] = 1000.0  # outliers in the top 10 % do not move the statistics
    values = torch.sort(depth.flatten(1), dim=1).values[:, 10:90]
    expected = (depth - values.mean(1)[:, None, None, None]) / torch.sqrt(values.var(1)[:, None, None, None] + 1e-6)
    torch.testing.assert_close(standardize_depth(depth), expected)
    valid = torch.ones(2, 10, 10, dtype=torch.bool)
    valid[1, :5] = False
    standardized = standardize_depth(depth, valid_mask=valid)
    assert torch.all(standardized[1, 0, :5] == 0)
    kept = torch.sort(depth[1, 0, 5:].flatten()).values[5:45]
    torch.testing.assert_close(standardized[1, 0, 5:], (depth[1, 0, 5:] - kept.mean()) / torch.sqrt(kept.var() + 1e-6))


def test_invalid_target_pixels_are_not_scored():
    predictions = torch.zeros(1, 1, 4, 4)
    targets = torch.ones(1, 1, 4, 4)
    targets[0, 0, 0, 0] = float("nan")
    targets[0, 0, 0, 1] = 9.0
    valid = torch.ones(1, 4, 4, dtype=torch.bool)
    valid[0, 0, :2] = False
    loss = masked_dense_loss(predictions, targets, None, 2, loss_type="l1", valid_mask=valid)
    assert loss.item() == pytest.approx(1.0)
    normalized = normalize_dense_patches(torch.arange(16.0).reshape(1, 1, 4, 4), 2)
    torch.testing.assert_close(
        normalized[0, 0, :2, :2].flatten(),
        (torch.tensor([0.0, 1, 4, 5]) - 2.5) / torch.tensor([0.0, 1, 4, 5]).var().add(1e-6).sqrt(),
    )


def test_every_trainable_parameter_gets_a_gradient_with_all_modalities():
    model = MultiMAEForPreTraining(tiny_config()).train()
    masks = masks_with_visible({"rgb": [4, 4, 4], "depth": [4, 4, 4], "semseg": [4, 4, 4]})
    model(modalities=inputs(), bool_masked_pos=masks).loss.backward()
    missing = [
        name for name, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.abs().sum())
    ]
    assert missing == []
    frozen = sorted(name for name, p in model.named_parameters() if not p.requires_grad)
    assert frozen and all(name.endswith("position_embeddings") for name in frozen)


def test_any_subset_of_modalities_and_targets_for_outputs_not_given():
    model = MultiMAEForPreTraining(tiny_config(num_visible_tokens=6)).eval()
    data = inputs()
    with torch.no_grad():
        depth_only = model(modalities={"depth": data["depth"]}, targets={"rgb": data["rgb"]})
    assert set(depth_only.bool_masked_pos) == {"depth"}
    assert set(depth_only.losses) == {"rgb", "norm_rgb", "depth"}  # no semseg target given
    assert depth_only.logits["semseg"].shape == (BATCH, CLASSES, IMAGE // 4, IMAGE // 4)
    encoder = MultiMAEModel(tiny_config()).eval()
    with torch.no_grad():
        rgb_d = encoder(data["rgb"], {"depth": data["depth"]}).last_hidden_state
        semseg = encoder(modalities={"semseg": data["semseg"]}).last_hidden_state
    assert rgb_d.shape == (BATCH, 2 * N + 1, 32) and semseg.shape == (BATCH, N + 1, 32)


# ---- bad input -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        (lambda d: {}, ValueError, "No input"),
        (lambda d: {**d, "normals": d["rgb"]}, ValueError, "Unknown modalities"),
        (lambda d: {**d, "semseg": d["semseg"].masked_fill(d["semseg"] == 1, 7)}, ValueError, "outside"),
        (lambda d: {**d, "semseg": d["semseg"].float()}, ValueError, "integer dtype"),
        (lambda d: {**d, "depth": d["depth"].masked_fill(d["depth"] > 1, float("nan"))}, ValueError, "NaN"),
        (lambda d: {**d, "depth": d["depth"][:, :, :16, :16]}, ValueError, "different image sizes"),
        (
            lambda d: {**d, "rgb": d["rgb"][:, :1]},
            ValueError,
            r"shape \(batch, 3, height, width\).*Fix: .*MultiMAEImageProcessor",
        ),
        (lambda d: {**d, "rgb": (d["rgb"] * 255).to(torch.uint8)}, TypeError, "floating-point.*torch.uint8"),
        (
            lambda d: {**d, "rgb": d["rgb"][:, :, :30, :30], "depth": d["depth"][:, :, :30, :30]},
            ValueError,
            "divisible",
        ),
    ],
)
def test_bad_input_gets_a_clear_error(change, error, message):
    model = MultiMAEForPreTraining(tiny_config(num_visible_tokens=4)).eval()
    with pytest.raises(error, match=message):
        model(modalities=change(inputs()))


def test_ignore_index_in_an_input_map_embeds_to_zero_and_misspelt_kwargs_fail():
    model = MultiMAEModel(tiny_config()).eval()
    labels = inputs()["semseg"]
    labels[:, :2, :2] = 255
    adapter = model.input_adapters["semseg"]
    with torch.no_grad():
        tokens = adapter(labels)
        zero = labels.clone()
        zero[:, :2, :2] = 0
        embedded = adapter.class_embeddings(zero).permute(0, 3, 1, 2)
        embedded[:, :, :2, :2] = 0
        expected = adapter.projection(embedded).flatten(2).transpose(1, 2) + adapter.position_embeddings.flatten(
            2
        ).transpose(1, 2)
    torch.testing.assert_close(tokens, expected)
    with pytest.raises(TypeError, match=r"\['bool_masked_poss'\].*spelling.*bool_masked_pos"):
        model(inputs()["rgb"], bool_masked_poss=torch.zeros(BATCH, N, dtype=torch.bool))


def test_pooler_output_is_the_mean_of_the_patch_tokens_without_the_global_tokens():
    config = tiny_config(num_global_tokens=2)
    model = MultiMAEModel(config).eval()
    with torch.no_grad():
        outputs = model(inputs()["rgb"], {"depth": inputs()["depth"]})
    tokens = outputs.last_hidden_state
    assert tokens.shape[1] == 2 * N + 2
    torch.testing.assert_close(outputs.pooler_output, tokens[:, : 2 * N].mean(dim=1))
    assert not torch.allclose(outputs.pooler_output, tokens.mean(dim=1))


# ---- heads ---------------------------------------------------------------------------------------------------------


def test_rgb_d_segmentation_and_classification_heads():
    config = tiny_config(head_modalities=["rgb", "depth"], num_labels=4)
    data = inputs()
    segmenter = MultiMAEForSemanticSegmentation(config).train()
    labels = torch.randint(0, 4, (BATCH, IMAGE, IMAGE))
    out = segmenter(data["rgb"], {"depth": data["depth"]}, labels=labels)
    assert out.logits.shape == (BATCH, 4, IMAGE, IMAGE)
    out.loss.backward()
    assert segmenter.segmentation_head.proj_dec.weight.shape[1] == 2 * config.hidden_size
    with pytest.raises(ValueError, match="depth"):
        segmenter(data["rgb"])
    classifier = MultiMAEForImageClassification(tiny_config(num_labels=4)).eval()
    with torch.no_grad():
        outputs = classifier(modalities={"depth": data["depth"], "semseg": data["semseg"]}, output_hidden_states=True)
        pooled = outputs.hidden_states[-1].mean(dim=1)
    torch.testing.assert_close(outputs.logits, classifier.classifier(classifier.layernorm(pooled)))


def test_backbone_multiscale_maps_and_pretrained_weights_in_upernet_and_dpt(tmp_path):
    from transformers import DPTConfig, DPTForDepthEstimation

    from hf_unified_pretrain.downstream import build_head_model

    torch.manual_seed(0)
    pretrained = MultiMAEForPreTraining(tiny_config(num_hidden_layers=4))
    pretrained.save_pretrained(tmp_path / "pre")
    scales = [4.0, 2.0, 1.0, 0.5]
    stages = ["stage1", "stage2", "stage3", "stage4"]
    upernet = build_head_model(
        "upernet",
        tmp_path / "pre",
        out_features=stages,
        backbone_overrides={"backbone_feature_scales": scales},
        hidden_size=16,
        auxiliary_channels=8,
        num_labels=3,
    )
    torch.testing.assert_close(
        upernet.backbone.multimae.encoder.layer[0].attention.qkv.weight,
        pretrained.multimae.encoder.layer[0].attention.qkv.weight,
    )
    maps = upernet.backbone(inputs()["rgb"]).feature_maps
    assert [tuple(m.shape[-2:]) for m in maps] == [(16, 16), (8, 8), (4, 4), (2, 2)]
    labels = torch.randint(0, 3, (BATCH, IMAGE, IMAGE))
    upernet(inputs()["rgb"], labels=labels).loss.backward()
    upernet.save_pretrained(tmp_path / "upernet")
    type(upernet).from_pretrained(tmp_path / "upernet")

    backbone_config = MultiMAEConfig.from_pretrained(
        tmp_path / "pre", out_features=stages, reshape_hidden_states=False
    )
    dpt = DPTForDepthEstimation(
        DPTConfig(
            backbone_config=backbone_config,
            hidden_size=32,
            patch_size=PATCH,
            image_size=IMAGE,
            neck_hidden_sizes=[8, 16, 32, 32],
            fusion_hidden_size=16,
            reassemble_factors=[4, 2, 1, 0.5],
            is_hybrid=False,
            head_in_index=-1,
        )
    )
    dpt.backbone.load_state_dict(
        MultiMAEBackbone.from_pretrained(tmp_path / "pre", config=backbone_config).state_dict()
    )
    depth = dpt(inputs()["rgb"]).predicted_depth
    assert depth.shape[0] == BATCH and depth.shape[-1] == depth.shape[-2] >= IMAGE
    depth.mean().backward()
    assert dpt.backbone.multimae.encoder.layer[0].attention.qkv.weight.grad is not None
    dpt.eval().save_pretrained(tmp_path / "dpt")
    reloaded = DPTForDepthEstimation.from_pretrained(tmp_path / "dpt").eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(inputs()["rgb"]).predicted_depth, dpt(inputs()["rgb"]).predicted_depth)


# ---- image processor -----------------------------------------------------------------------------------------------


def test_image_processor_handles_every_modality():
    processor = MultiMAEImageProcessor(size={"height": IMAGE, "width": IMAGE})
    rng = np.random.default_rng(0)
    rgb = [rng.integers(0, 256, (48, 40, 3), dtype=np.uint8) for _ in range(2)]
    depth16 = [rng.integers(1, 65535, (48, 40), dtype=np.uint16) for _ in range(2)]
    depth16[0][:6] = 0  # invalid (no return)
    labels = [rng.integers(0, 300, (48, 40), dtype=np.uint16) for _ in range(2)]
    out = processor.preprocess_modalities(rgb, depth16, labels, num_semseg_classes=300, ignore_index=65535)
    assert out["modalities"]["rgb"].shape == (2, 3, IMAGE, IMAGE)
    depth = out["modalities"]["depth"]
    assert depth.dtype == torch.float32 and depth.shape == (2, 1, IMAGE, IMAGE)
    assert not out["valid_masks"]["depth"][0, :3].any() and out["valid_masks"]["depth"][1].all()
    assert torch.all(depth[0, 0, :3] == 0)
    assert out["modalities"]["semseg"].shape == (2, IMAGE // 4, IMAGE // 4)
    assert out["modalities"]["semseg"].max() > 255  # 16-bit labels kept
    with pytest.raises(ValueError, match="outside"):
        processor.preprocess_modalities(semseg=labels, num_semseg_classes=100)
    with pytest.raises(ValueError, match="one channel"):
        processor.preprocess_modalities(depth=[rng.random((8, 8, 3))])
