"""iTPN behaviour: token dropping, the pre-training objectives, teachers, masks, round trips and input errors."""

import pytest
import torch
from huggingface_hub.errors import StrictDataclassClassValidationError
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from transformers import (
    AutoModel,
    AutoModelForImageClassification,
    AutoModelForPreTraining,
    CLIPVisionConfig,
    CLIPVisionModelWithProjection,
    UperNetConfig,
    UperNetForSemanticSegmentation,
)

import hf_unified_pretrain  # noqa: F401  (registers the Auto classes)
from hf_unified_pretrain.models.itpn import (
    ITPNBackbone,
    ITPNConfig,
    ITPNForImageClassification,
    ITPNForPreTraining,
    ITPNModel,
)
from hf_unified_pretrain.models.itpn.modeling_itpn import ITPNLayer, ITPNMlpBlock
from hf_unified_pretrain.objectives import normalize_patches, patchify
from hf_unified_pretrain.teachers import FrozenTeacher
from hf_unified_pretrain.teachers.ema import EMATeacher

NUM_PATCHES = 16  # 64x64 images, 16x16 patches


def tiny_config(**overrides) -> ITPNConfig:
    defaults = {
        "image_size": 64,
        "hidden_size": 32,
        "stage1_depth": 1,
        "stage2_depth": 1,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "fpn_dim": 16,
        "fpn_depth": 1,
        "decoder_hidden_size": 32,
        "decoder_num_hidden_layers": 1,
        "decoder_num_attention_heads": 2,
        "teacher_dim": 24,
        "num_masking_patches": 6,
        "mask_min_block_tokens": 2,
        "aux_layer_index": 0,
        "num_labels": 3,
    }
    return ITPNConfig(**{**defaults, **overrides})


def clip_config(**overrides) -> ITPNConfig:
    return tiny_config(
        pretraining_target="clip", use_relative_position_bias=True, layer_scale_init_value=0.1, **overrides
    )


def images(batch: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, 64, 64, generator=torch.Generator().manual_seed(seed))


def fixed_mask(batch: int = 2, num_masked: int = 12) -> torch.Tensor:
    """Exactly `num_masked` masked patches per row, different rows."""
    mask = torch.zeros(batch, NUM_PATCHES, dtype=torch.bool)
    for row in range(batch):
        order = torch.randperm(NUM_PATCHES, generator=torch.Generator().manual_seed(row))
        mask[row, order[:num_masked]] = True
    return mask


def teacher_targets(batch: int = 2, dim: int = 24) -> torch.Tensor:
    return torch.randn(batch, NUM_PATCHES, dim, generator=torch.Generator().manual_seed(5))


# ----------------------------------------------------------------------------------------------------------------
# Token dropping (pixel target)
# ----------------------------------------------------------------------------------------------------------------


def test_every_encoder_block_runs_on_the_visible_tokens_only():
    model = ITPNForPreTraining(tiny_config()).eval()
    lengths = []
    hooks = [
        module.register_forward_hook(lambda mod, args, out: lengths.append(args[0].shape[1]))
        for module in model.itpn.modules()
        if isinstance(module, (ITPNMlpBlock, ITPNLayer))
    ]
    with torch.no_grad():
        output = model(images(), bool_masked_pos=fixed_mask(num_masked=12), output_hidden_states=True)
    for hook in hooks:
        hook.remove()
    # stage 1, stage 2, 2 stage-3 layers, 2 fusion blocks and 3 level outputs: all see K = 16 - 12 = 4 patches
    assert lengths == [4] * 9
    assert all(h.shape == (2, 4, 32) for h in output.hidden_states)
    assert output.logits.shape == (2, NUM_PATCHES, 16 * 16 * 3)  # the decoder predicts every patch


def test_dropping_cuts_the_encoder_cost_with_the_mask_ratio():
    model = ITPNModel(tiny_config(), add_pooling_layer=False).eval()

    def flops(module, *args, **kwargs) -> int:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            module(*args, **kwargs)
        return counter.get_total_flops()

    # As in the original, the 4x4-pixel projection runs on the whole image and patches are dropped right after it.
    projection = flops(model.embeddings.patch_embeddings, images())
    full = flops(model, images()) - projection
    quarter = flops(model, images(), bool_masked_pos=fixed_mask(num_masked=12)) - projection
    # Everything after it scales with K/N = 1/4 (attention even faster).
    assert 0.1 * full < quarter <= 0.25 * full


def test_masked_patches_cannot_influence_the_encoder():
    model = ITPNModel(tiny_config(), add_pooling_layer=False).eval()
    mask = fixed_mask(num_masked=12)
    pixels = images()
    changed = pixels.clone()
    patch_mask = mask.reshape(2, 4, 4).repeat_interleave(16, 1).repeat_interleave(16, 2)
    changed[patch_mask.unsqueeze(1).expand_as(changed)] = 7.0
    with torch.no_grad():
        before = model(pixels, bool_masked_pos=mask)
        after = model(changed, bool_masked_pos=mask)
        unmasked = model(changed)
    assert torch.equal(before.last_hidden_state, after.last_hidden_state)
    for first, second in zip(before.pyramid_features, after.pyramid_features):
        assert torch.equal(first, second)
    assert not torch.allclose(unmasked.last_hidden_state, model(pixels).last_hidden_state)


def test_the_base_model_never_masks_unless_asked():
    model = ITPNModel(tiny_config()).eval()
    with torch.no_grad():
        first, second = model(images()), model(images())
    assert first.last_hidden_state.shape == (2, NUM_PATCHES, 32)
    assert torch.equal(first.last_hidden_state, second.last_hidden_state)


def test_pixel_loss_counts_only_masked_patches():
    model = ITPNForPreTraining(tiny_config()).eval()
    pixels, mask = images(), fixed_mask(num_masked=12)
    with torch.no_grad():
        output = model(pixels, bool_masked_pos=mask)
    per_patch = (output.logits - normalize_patches(patchify(pixels, 16))).pow(2).mean(-1)
    torch.testing.assert_close(output.loss, per_patch[mask].mean())
    assert not torch.allclose(output.loss, per_patch.mean())
    assert output.losses.keys() == {"pixel"}

    model.config.norm_pix_loss = False
    with torch.no_grad():
        raw = model(pixels, bool_masked_pos=mask)
    torch.testing.assert_close(raw.loss, (raw.logits - patchify(pixels, 16)).pow(2).mean(-1)[mask].mean())


# ----------------------------------------------------------------------------------------------------------------
# CLIP target
# ----------------------------------------------------------------------------------------------------------------


def test_clip_target_replaces_masked_tokens_with_the_mask_token():
    model = ITPNModel(clip_config(), add_pooling_layer=False).eval()
    everything = torch.ones(2, NUM_PATCHES, dtype=torch.bool)
    with torch.no_grad():
        first = model(images(seed=0), bool_masked_pos=everything)
        second = model(images(seed=1), bool_masked_pos=everything)
        partial = model(images(seed=0), bool_masked_pos=fixed_mask(num_masked=6))
    # With every stage-3 token replaced, stage 3 no longer sees the image (the pyramid still gets stage 1-2 laterals).
    torch.testing.assert_close(first.last_hidden_state, second.last_hidden_state)
    assert partial.last_hidden_state.shape == (2, NUM_PATCHES, 32)  # nothing is dropped
    assert not torch.allclose(first.pyramid_features[0], second.pyramid_features[0])


@pytest.mark.parametrize("all_tokens", [True, False])
def test_clip_losses_are_smooth_l1_of_both_heads(all_tokens):
    model = ITPNForPreTraining(clip_config(clip_loss_on_all_tokens=all_tokens)).eval()
    mask, targets = fixed_mask(num_masked=6), teacher_targets()
    with torch.no_grad():
        output = model(images(), bool_masked_pos=mask, teacher_features=targets)
    weights = torch.ones(2, NUM_PATCHES) if all_tokens else mask.float()

    def expected(predictions):
        per_token = nn.functional.smooth_l1_loss(predictions, targets, reduction="none").mean(-1)
        return (per_token * weights).sum() / weights.sum()

    torch.testing.assert_close(output.losses["clip"], expected(output.logits))
    torch.testing.assert_close(output.losses["clip_aux"], expected(output.aux_logits))
    torch.testing.assert_close(output.loss, output.losses["clip"] + output.losses["clip_aux"])


def test_loss_weights_are_config_fields():
    model = ITPNForPreTraining(clip_config(clip_loss_weight=0.5, clip_aux_loss_weight=2.0)).eval()
    with torch.no_grad():
        output = model(images(), bool_masked_pos=fixed_mask(num_masked=6), teacher_features=teacher_targets())
    torch.testing.assert_close(output.loss, 0.5 * output.losses["clip"] + 2.0 * output.losses["clip_aux"])


def test_auxiliary_branch_reads_the_configured_stage3_block():
    config = clip_config(num_hidden_layers=3, aux_layer_index=1)
    model = ITPNForPreTraining(config).eval()
    captured = {}
    model.aux_head.layers[0].register_forward_hook(lambda mod, args, out: captured.update(input=args[0]))
    with torch.no_grad():
        model(images(), bool_masked_pos=fixed_mask(num_masked=6), teacher_features=teacher_targets())
        hidden = model.itpn(images(), bool_masked_pos=fixed_mask(num_masked=6), output_hidden_states=True)
    torch.testing.assert_close(captured["input"], hidden.hidden_states[2])  # output of block 1
    config = ITPNConfig(num_hidden_layers=24)
    assert config.resolved_aux_layer_index == 18  # int(0.75 * depth), as the original
    config.num_hidden_layers = 8  # a later override moves the derived index along
    assert config.resolved_aux_layer_index == 6


def _tiny_clip_folder(tmp_path) -> str:
    config = CLIPVisionConfig(
        hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=2, image_size=64,
        patch_size=16, projection_dim=24,
    )  # fmt: skip
    torch.manual_seed(0)
    CLIPVisionModelWithProjection(config).save_pretrained(tmp_path / "clip")
    return str(tmp_path / "clip")


def test_attached_clip_teacher_gives_the_same_loss_as_its_precomputed_features(tmp_path):
    teacher = FrozenTeacher.from_pretrained(_tiny_clip_folder(tmp_path))
    model = ITPNForPreTraining(clip_config()).eval()
    model.set_teacher(teacher)
    pixels, mask = images(), fixed_mask(num_masked=6)
    with torch.no_grad():
        attached = model(pixels, bool_masked_pos=mask)
        # The original CLIP teacher ends with a LayerNorm without affine; precomputed targets are taken as given.
        normalized = nn.functional.layer_norm(teacher(pixels), (24,), eps=1e-6)
        given = model(pixels, bool_masked_pos=mask, teacher_features=normalized)
        model.config.normalize_teacher_features = False
        raw = model(pixels, bool_masked_pos=mask)
        given_raw = model(pixels, bool_masked_pos=mask, teacher_features=teacher(pixels))
    torch.testing.assert_close(attached.loss, given.loss)
    torch.testing.assert_close(raw.loss, given_raw.loss)
    assert not torch.allclose(raw.loss, attached.loss)
    assert not any(key.startswith("model.") for key in model.state_dict())
    assert all(p.requires_grad is False for p in teacher.parameters())


# ----------------------------------------------------------------------------------------------------------------
# Masked feature modelling on every pyramid level
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("make_config", [tiny_config, clip_config])
def test_mfm_with_an_ema_teacher_regresses_every_pyramid_level(make_config):
    model = ITPNForPreTraining(make_config(mfm_target="ema", mfm_loss_weights=[1.0, 0.5, 0.25])).eval()
    model.set_mfm_teacher(EMATeacher(model.itpn, base_momentum=0.99))
    pixels, mask = images(), fixed_mask(num_masked=6)
    extra = {"teacher_features": teacher_targets()} if model.config.pretraining_target == "clip" else {}
    with torch.no_grad():
        output = model(pixels, bool_masked_pos=mask, **extra)
        levels = model.itpn(pixels).pyramid_features  # the EMA copy starts equal to the student
        given = model(pixels, bool_masked_pos=mask, mfm_targets=levels, **extra)
    assert {"mfm_stride4", "mfm_stride8", "mfm_stride16"} <= output.losses.keys()
    for name in ("mfm_stride4", "mfm_stride8", "mfm_stride16"):
        torch.testing.assert_close(output.losses[name], given.losses[name])
    weighted = output.losses["mfm_stride4"] + 0.5 * output.losses["mfm_stride8"] + 0.25 * output.losses["mfm_stride16"]
    main = sum(v for k, v in output.losses.items() if not k.startswith("mfm"))
    torch.testing.assert_close(output.loss, main + weighted)
    assert [p.shape[-1] for p in output.mfm_logits] == [16 * 16, 4 * 16, 16]
    # The teacher stays outside the student: not saved, not trained.
    assert len(model.state_dict()) == len(ITPNForPreTraining(model.config).state_dict())
    assert model.mfm_teacher is not None and not any(p.requires_grad for p in model.mfm_teacher.parameters())


def test_mfm_targets_are_compared_at_masked_patches_only():
    model = ITPNForPreTraining(tiny_config(mfm_target="frozen", mfm_loss_type="mse")).eval()
    mask = fixed_mask(num_masked=12)
    targets = [torch.randn(2, NUM_PATCHES, s, s, 16, generator=torch.Generator().manual_seed(s)) for s in (4, 2, 1)]
    with torch.no_grad():
        output = model(images(), bool_masked_pos=mask, mfm_targets=targets)
        altered = [t.clone() for t in targets]
        for level in altered:
            level[~mask] = 100.0  # visible patches
        same = model(images(), bool_masked_pos=mask, mfm_targets=altered)
    for name in ("mfm_stride4", "mfm_stride8", "mfm_stride16"):
        torch.testing.assert_close(output.losses[name], same.losses[name])
    normalized = nn.functional.layer_norm(targets[0], (16,)).flatten(2)
    expected = (output.mfm_logits[0] - normalized).pow(2).mean(-1)[mask].mean()
    torch.testing.assert_close(output.losses["mfm_stride4"], expected)


def test_mfm_without_teacher_or_targets_is_a_clear_error():
    model = ITPNForPreTraining(tiny_config(mfm_target="ema")).eval()
    with pytest.raises(ValueError, match="set_mfm_teacher"):
        model(images(), bool_masked_pos=fixed_mask())
    with pytest.raises(ValueError, match=r"stride-4 level must have shape \(2, 16, 4, 4, 16\)"):
        model(images(), bool_masked_pos=fixed_mask(), mfm_targets=[torch.zeros(2, 16, 4, 4, 8)] * 3)


# ----------------------------------------------------------------------------------------------------------------
# Gradients
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "config",
    [tiny_config(), clip_config(), tiny_config(mfm_target="frozen"), clip_config(mfm_target="frozen")],
    ids=["pixel", "clip", "pixel+mfm", "clip+mfm"],
)
def test_gradients_reach_every_trainable_parameter(config):
    model = ITPNForPreTraining(config).train()
    inputs = {"bool_masked_pos": fixed_mask(num_masked=6)}
    if config.pretraining_target == "clip":
        inputs["teacher_features"] = teacher_targets()
    if config.mfm_target is not None:
        inputs["mfm_targets"] = [torch.randn(2, NUM_PATCHES, s, s, 16) for s in (4, 2, 1)]
    model(images(), **inputs).loss.backward()
    silent = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.any())]
    assert silent == []
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert frozen == (["decoder.position_embeddings"] if config.pretraining_target == "pixel" else [])


# ----------------------------------------------------------------------------------------------------------------
# Masks
# ----------------------------------------------------------------------------------------------------------------


def test_sampled_masks_follow_the_config():
    pixel = ITPNForPreTraining(tiny_config(num_masking_patches=None, mask_ratio=0.75))
    noise = torch.rand(2, NUM_PATCHES, generator=torch.Generator().manual_seed(3))
    mask = pixel.sample_mask(images(), noise=noise)
    assert mask.sum(1).tolist() == [12, 12]
    assert torch.equal(mask, noise > noise.sort(1).values[:, 3:4])  # the 4 smallest noise values stay visible
    with torch.no_grad():
        first, second = pixel.eval()(images(), noise=noise), pixel(images(), noise=noise)
    assert torch.equal(first.bool_masked_pos, mask) and torch.equal(first.logits, second.logits)

    clip = ITPNForPreTraining(clip_config(num_masking_patches=5))
    block = clip.sample_mask(images(), generator=torch.Generator().manual_seed(0))
    assert block.dtype == torch.bool and block.sum(1).tolist() == [5, 5]
    assert ITPNForPreTraining(clip_config(num_masking_patches=None, mask_ratio=0.5)).sample_mask(images()).sum() == 16


def test_grid_shaped_and_integer_masks_are_accepted():
    model = ITPNForPreTraining(tiny_config()).eval()
    mask = fixed_mask(num_masked=12)
    with torch.no_grad():
        flat = model(images(), bool_masked_pos=mask)
        grid = model(images(), bool_masked_pos=mask.reshape(2, 4, 4).long())
    assert torch.equal(flat.logits, grid.logits)


# ----------------------------------------------------------------------------------------------------------------
# Round trips
# ----------------------------------------------------------------------------------------------------------------


def test_round_trips_through_the_auto_classes_and_the_backbone(tmp_path):
    config = clip_config(out_features=["stage1", "stage2", "stage3", "stage4"])
    model = ITPNForPreTraining(config).eval()
    model.save_pretrained(tmp_path / "pretrain")
    pixels, mask, targets = images(), fixed_mask(num_masked=6), teacher_targets()

    reloaded = AutoModelForPreTraining.from_pretrained(tmp_path / "pretrain").eval()
    base = AutoModel.from_pretrained(tmp_path / "pretrain").eval()
    # AutoBackbone.from_pretrained(<local dir>) calls the Hub in transformers 5.23: use the class itself.
    backbone = ITPNBackbone.from_pretrained(tmp_path / "pretrain").eval()
    classifier = AutoModelForImageClassification.from_pretrained(tmp_path / "pretrain").eval()
    assert isinstance(reloaded, ITPNForPreTraining) and isinstance(base, ITPNModel)
    assert isinstance(classifier, ITPNForImageClassification)
    with torch.no_grad():
        torch.testing.assert_close(
            reloaded(pixels, bool_masked_pos=mask, teacher_features=targets).loss,
            model(pixels, bool_masked_pos=mask, teacher_features=targets).loss,
        )
        ours = model.itpn(pixels)
        torch.testing.assert_close(base(pixels).last_hidden_state, ours.last_hidden_state)
        maps = backbone(pixels).feature_maps
        assert [m.shape for m in maps] == [(2, 24, 16, 16), (2, 32, 8, 8), (2, 48, 4, 4), (2, 48, 2, 2)]
        torch.testing.assert_close(maps[2][:, :16], ours.pyramid_features[2].reshape(2, 4, 4, 16).permute(0, 3, 1, 2))
    pretrained = model.itpn.state_dict()
    shared = {name: tensor for name, tensor in classifier.itpn.state_dict().items() if not name.startswith("pooler.")}
    assert len(shared) > 30 and shared.keys() <= pretrained.keys()
    for name, tensor in shared.items():
        torch.testing.assert_close(tensor, pretrained[name], msg=name)


def test_backbone_feeds_an_upernet_head(tmp_path):
    backbone_config = tiny_config(backbone_layout="seg", out_features=["stage1", "stage2", "stage3", "stage4"])
    config = UperNetConfig(backbone_config=backbone_config, hidden_size=16, auxiliary_channels=8, num_labels=4)
    model = UperNetForSemanticSegmentation(config)
    labels = torch.randint(0, 4, (2, 64, 64), generator=torch.Generator().manual_seed(0))
    output = model(images(), labels=labels)
    assert output.logits.shape == (2, 4, 64, 64)
    output.loss.backward()
    assert model.backbone.itpn.embeddings.patch_embeddings.projection.weight.grad is not None
    model.save_pretrained(tmp_path / "upernet")
    reloaded = UperNetForSemanticSegmentation.from_pretrained(tmp_path / "upernet").eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(images()).logits, model.eval()(images()).logits)


# ----------------------------------------------------------------------------------------------------------------
# Input errors
# ----------------------------------------------------------------------------------------------------------------


ENTRY_POINTS = [ITPNModel, ITPNForPreTraining, ITPNBackbone, ITPNForImageClassification]


@pytest.mark.parametrize("model_class", ENTRY_POINTS)
def test_image_size_not_divisible_by_the_patch_size(model_class):
    with pytest.raises(ValueError, match="not divisible by the patch size 16"):
        model_class(tiny_config())(torch.randn(1, 3, 64, 60))


@pytest.mark.parametrize("model_class", ENTRY_POINTS)
def test_wrong_channel_count_or_rank(model_class):
    with pytest.raises(ValueError, match="has 1 channels but the model expects 3"):
        model_class(tiny_config())(torch.randn(1, 1, 64, 64))
    with pytest.raises(ValueError, match=r"\(batch_size, num_channels, height, width\)"):
        model_class(tiny_config())(torch.randn(3, 64, 64))


def test_mask_of_the_wrong_shape_or_dtype():
    model = ITPNForPreTraining(tiny_config())
    with pytest.raises(ValueError, match=r"\(batch_size, num_patches\) = \(2, 16\)"):
        model(images(), bool_masked_pos=torch.zeros(2, 9, dtype=torch.bool))
    with pytest.raises(TypeError, match="dtype torch.bool"):
        model(images(), bool_masked_pos=torch.zeros(2, 16))


def test_dropping_needs_the_same_count_per_row():
    mask = fixed_mask(num_masked=6)
    mask[0, mask[0].nonzero()[0]] = False
    with pytest.raises(ValueError, match="same number of tokens"):
        ITPNForPreTraining(tiny_config())(images(), bool_masked_pos=mask)


def test_other_input_sizes_need_interpolate_pos_encoding():
    for config in (clip_config(), tiny_config()):  # relative-position bias tables / absolute position embeddings
        model = ITPNModel(config)
        with pytest.raises(ValueError, match=r"96x80 pixels \(6x5 patches\).*interpolate_pos_encoding=True"):
            model(torch.randn(1, 3, 96, 80))
        output = model(torch.randn(1, 3, 96, 80), interpolate_pos_encoding=True)
        assert output.last_hidden_state.shape == (1, 30, config.hidden_size)


def test_teacher_errors():
    model = ITPNForPreTraining(clip_config())
    with pytest.raises(ValueError, match="no teacher is attached"):
        model(images(), bool_masked_pos=fixed_mask(num_masked=6))
    with pytest.raises(ValueError, match=r"teacher_features must have shape .* \(2, 16, 24\)"):
        model(images(), bool_masked_pos=fixed_mask(num_masked=6), teacher_features=torch.zeros(2, 16, 7))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"hidden_size": 30}, "divisible by 4"),
        ({"hidden_size": 36, "num_attention_heads": 5}, "num_attention_heads"),
        ({"image_size": 70}, "divisible by patch_size"),
        ({"pretraining_target": "tokens"}, "pretraining_target"),
        ({"backbone_layout": "fpn"}, "backbone_layout"),
        ({"mfm_target": "teacher"}, "mfm_target"),
        ({"decoder_hidden_size": 40}, "divisible by 16"),
        ({"mask_ratio": 1.0}, "mask_ratio"),
        ({"aux_layer_index": 5}, "aux_layer_index"),
    ],
)
def test_invalid_configs_are_rejected(overrides, message):
    # huggingface_hub's @strict wraps the ValueError of the validator (its message is kept).
    with pytest.raises(StrictDataclassClassValidationError, match=message):
        tiny_config(**overrides)


def test_pretraining_without_the_pyramid_is_rejected():
    with pytest.raises(ValueError, match="use_pyramid=True"):
        ITPNForPreTraining(tiny_config(use_pyramid=False))


# ----------------------------------------------------------------------------------------------------------------
# Layer-wise LR decay and presets
# ----------------------------------------------------------------------------------------------------------------


def test_layer_ids_for_lr_decay_follow_the_original_rule():
    model = ITPNForPreTraining(tiny_config(stage1_depth=2, stage2_depth=1, num_hidden_layers=3))
    ids = {name: model.get_layer_id_for_lr_decay(name) for name, _ in model.named_parameters()}
    assert model.num_lr_decay_layers == 2 + 1 + 3 + 2
    assert ids["itpn.embeddings.patch_embeddings.projection.weight"] == 0
    assert ids["itpn.embeddings.position_embeddings"] == 0
    assert ids["itpn.embeddings.stage1.1.mlp.fc1.weight"] == 2
    assert ids["itpn.embeddings.merge1.reduction.weight"] == 2  # shares the id of the block before it
    assert ids["itpn.embeddings.stage2.0.mlp.fc1.weight"] == 3
    assert ids["itpn.embeddings.merge2.norm.weight"] == 3
    assert ids["itpn.encoder.layers.2.attention.qkv.weight"] == 6
    assert ids["itpn.pyramid.output_blocks.0.mlp.fc1.weight"] == 7
    assert ids["decoder.predictor.weight"] == 7
    assert set(ids.values()) == set(range(model.num_lr_decay_layers))
    base = ITPNModel(tiny_config())
    assert base.get_layer_id_for_lr_decay("encoder.layers.0.layernorm_before.weight") == 3


@pytest.mark.parametrize(
    ("preset", "millions"),
    [
        ("itpn-base-clip", 78.6),  # iTPN-B classifier (rel-pos bias on, as the released fine-tuning models)
        ("fast-itpn-tiny", 24.2),
        ("fast-itpn-small", 39.9),
        ("fast-itpn-base", 84.8),
        ("fast-itpn-large", 312.1),
        ("hivit-tiny", 19.2),
        ("hivit-small", 37.5),
        ("hivit-base", 66.4),
    ],
)
def test_presets_have_the_published_classifier_sizes(preset, millions):
    with torch.device("meta"):
        model = ITPNForImageClassification(ITPNConfig.from_preset(preset, num_labels=1000))
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 1) == millions


def test_presets_build_and_unknown_names_fail():
    config = ITPNConfig.from_preset("itpn-large-clip")
    assert (config.hidden_size, config.num_hidden_layers, config.teacher_dim) == (768, 40, 768)
    assert (config.layer_scale_init_value, config.num_masking_patches, config.fpn_depth) == (1e-5, 75, 1)
    assert ITPNConfig.from_preset("itpn-tiny-test", image_size=64).image_size == 64
    with pytest.raises(ValueError, match="Unknown preset"):
        ITPNConfig.from_preset("itpn-huge")
