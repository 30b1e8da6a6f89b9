"""MVPForPreTraining behaviour: shapes, the masked-only feature loss, the frozen teacher, gradients, bad inputs."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from huggingface_hub.errors import StrictDataclassClassValidationError
from safetensors import safe_open

from hf_unified_pretrain.models.mvp import MVP_PRESETS, MVPConfig, MVPForPreTraining, MVPModel
from hf_unified_pretrain.teachers import FrozenTeacher

from .helpers import (
    BATCH,
    GRID,
    IMAGE,
    NUM_PATCHES,
    TEACHER_DIM,
    fixed_mask,
    pixels,
    teacher_features,
    tiny_clip_teacher_model,
    tiny_config,
)


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mvp_clip_teacher")
    tiny_clip_teacher_model().save_pretrained(folder)
    return folder


def eval_model(**overrides) -> MVPForPreTraining:
    torch.manual_seed(0)
    return MVPForPreTraining(tiny_config(**overrides)).eval()


def test_output_fields_and_shapes():
    model = eval_model()
    out = model(pixels(), bool_masked_pos=fixed_mask(), teacher_features=teacher_features(), output_hidden_states=True)
    assert out.logits.shape == (BATCH, NUM_PATCHES, TEACHER_DIM)
    assert out.bool_masked_pos.dtype == torch.bool and torch.equal(out.bool_masked_pos, fixed_mask())
    assert set(out.losses) == {"feature"}
    torch.testing.assert_close(out.loss, out.losses["feature"])
    assert len(out.hidden_states) == model.config.num_hidden_layers + 1
    assert all(h.shape == (BATCH, 1 + NUM_PATCHES, model.config.hidden_size) for h in out.hidden_states)
    assert list(out.keys())[:2] == ["loss", "losses"]


def test_loss_is_one_minus_cosine_over_masked_patches():
    model = eval_model()
    mask, target = fixed_mask(), teacher_features()
    out = model(pixels(), bool_masked_pos=mask, teacher_features=target)
    expected = (1 - F.cosine_similarity(out.logits, target, dim=-1))[mask].mean()
    torch.testing.assert_close(out.loss, expected)


def test_loss_ignores_targets_at_visible_patches_and_depends_on_masked_ones():
    model = eval_model()
    mask, target = fixed_mask(), teacher_features()
    with torch.no_grad():
        reference = model(pixels(), bool_masked_pos=mask, teacher_features=target).loss
        changed_visible = target.clone()
        changed_visible[~mask] = torch.randn_like(changed_visible[~mask]) * 10
        changed_masked = target.clone()
        changed_masked[mask] = torch.randn_like(changed_masked[mask])
        loss_visible = model(pixels(), bool_masked_pos=mask, teacher_features=changed_visible).loss
        loss_masked = model(pixels(), bool_masked_pos=mask, teacher_features=changed_masked).loss
    assert torch.equal(loss_visible, reference)
    assert not torch.allclose(loss_masked, reference)


@pytest.mark.parametrize("loss_type", ["smooth_l1", "mse", "l1"])
def test_elementwise_loss_types_with_normalised_targets(loss_type):
    model = eval_model(loss_type=loss_type, normalize_target=True, feature_loss_weight=0.5)
    mask, target = fixed_mask(), teacher_features()
    out = model(pixels(), bool_masked_pos=mask, teacher_features=target)
    normalised = F.layer_norm(target, (TEACHER_DIM,), eps=model.config.layer_norm_eps)
    elementwise = {"smooth_l1": F.smooth_l1_loss, "mse": F.mse_loss, "l1": F.l1_loss}[loss_type]
    expected = elementwise(out.logits[mask], normalised[mask])
    torch.testing.assert_close(out.losses["feature"], expected)
    torch.testing.assert_close(out.loss, 0.5 * expected)


def test_sampled_block_mask_has_the_configured_count():
    torch.manual_seed(3)
    out = eval_model()(pixels(), teacher_features=teacher_features())
    assert out.bool_masked_pos.shape == (BATCH, NUM_PATCHES)
    assert out.bool_masked_pos.sum(dim=1).tolist() == [6, 6]
    ratio_out = eval_model(num_masking_patches=None, mask_ratio=0.5)(
        pixels(batch=2, size=64), teacher_features=teacher_features(num_patches=64), interpolate_pos_encoding=True
    )
    assert ratio_out.bool_masked_pos.sum(dim=1).tolist() == [32, 32]


def test_accepts_a_grid_shaped_mask():
    model = eval_model()
    flat = model(pixels(), bool_masked_pos=fixed_mask(), teacher_features=teacher_features()).loss
    grid = model(pixels(), bool_masked_pos=fixed_mask().view(BATCH, GRID, GRID), teacher_features=teacher_features())
    torch.testing.assert_close(grid.loss, flat)


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {
            "use_mean_pooling": False,
            "use_relative_position_bias": True,
            "use_shared_relative_position_bias": False,
            "use_absolute_position_embeddings": True,
        },
    ],
    ids=["shared-bias", "per-layer-bias+abs-pos"],
)
def test_gradients_reach_every_trainable_parameter(overrides):
    model = MVPForPreTraining(tiny_config(**overrides)).train()
    model(pixels(), bool_masked_pos=fixed_mask(), teacher_features=teacher_features()).loss.backward()
    without_grad = [
        name for name, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.any())
    ]
    assert without_grad == []


def test_model_never_masks_unless_asked():
    torch.manual_seed(0)
    model = MVPModel(tiny_config()).eval()
    plain = model(pixels()).last_hidden_state
    none_masked = model(pixels(), bool_masked_pos=torch.zeros(BATCH, NUM_PATCHES, dtype=torch.bool)).last_hidden_state
    masked = model(pixels(), bool_masked_pos=fixed_mask()).last_hidden_state
    assert torch.equal(plain, none_masked)
    assert not torch.allclose(plain, masked)


# --- the frozen teacher -------------------------------------------------------------------------------------------


def test_attached_teacher_is_frozen_outside_the_module_tree_and_not_saved(clip_folder, tmp_path):
    model = eval_model()
    teacher = model.load_teacher(clip_folder)
    student_keys = set(model.state_dict())
    assert model.teacher is teacher and isinstance(teacher, FrozenTeacher)
    assert all(not p.requires_grad for p in teacher.parameters())
    assert not any(name.startswith("teacher") or "vision_model" in name for name, _ in model.named_parameters())
    model.train()
    assert model.training and not teacher.training and not teacher.model.training

    out = model(pixels(), bool_masked_pos=fixed_mask())
    torch.testing.assert_close(out.teacher_features, teacher(pixels()))
    out.loss.backward()
    assert all(p.grad is None for p in teacher.parameters())

    model.save_pretrained(tmp_path)
    with safe_open(tmp_path / "model.safetensors", framework="pt") as saved:
        saved_keys = set(saved.keys())
    assert saved_keys == student_keys
    assert json.loads((tmp_path / "config.json").read_text())["teacher_name_or_path"] == str(clip_folder)
    reloaded = MVPForPreTraining.from_pretrained(tmp_path)
    assert reloaded.config.teacher_name_or_path == str(clip_folder) and reloaded.teacher is None


def test_teacher_features_from_the_attached_teacher_equal_precomputed_ones(clip_folder):
    model = eval_model()
    teacher = FrozenTeacher.from_pretrained(clip_folder, target_grid=GRID)
    model.set_teacher(teacher)
    with torch.no_grad():
        attached = model(pixels(), bool_masked_pos=fixed_mask()).loss
        model.set_teacher(None)
        given = model(pixels(), bool_masked_pos=fixed_mask(), teacher_features=teacher(pixels())).loss
    torch.testing.assert_close(attached, given)


def test_teacher_pixel_values_go_to_the_teacher(clip_folder):
    model = eval_model()
    teacher = model.load_teacher(clip_folder)
    teacher_pixels = pixels(seed=5)
    with torch.no_grad():
        out = model(pixels(), bool_masked_pos=fixed_mask(), teacher_pixel_values=teacher_pixels)
    torch.testing.assert_close(out.teacher_features, teacher(teacher_pixel_values=teacher_pixels))
    assert not torch.allclose(out.teacher_features, teacher(pixels()))


def test_teacher_width_must_match_the_config(clip_folder):
    model = MVPForPreTraining(tiny_config(teacher_dim=16))
    with pytest.raises(ValueError, match="teacher_dim"):
        model.load_teacher(clip_folder)


def test_missing_teacher_is_a_clear_error():
    with pytest.raises(ValueError, match="no teacher is attached.*teacher_features"):
        eval_model()(pixels(), bool_masked_pos=fixed_mask())


def test_teacher_features_of_the_wrong_shape_are_rejected():
    with pytest.raises(ValueError, match=r"teacher_features must have shape \(batch, num_patches, teacher_dim\)"):
        eval_model()(pixels(), bool_masked_pos=fixed_mask(), teacher_features=teacher_features(num_patches=9))


# --- bad inputs -----------------------------------------------------------------------------------------------------


def test_image_size_not_divisible_by_patch_size():
    with pytest.raises(ValueError, match="not divisible by the patch size 8"):
        eval_model()(pixels(size=30), teacher_features=teacher_features())


def test_wrong_channel_count():
    with pytest.raises(ValueError, match="1 channels but the model expects 3"):
        eval_model()(torch.randn(BATCH, 1, IMAGE, IMAGE), teacher_features=teacher_features())


def test_mask_of_the_wrong_shape():
    with pytest.raises(ValueError, match=r"bool_masked_pos must have shape \(batch_size, num_patches\) = \(2, 16\)"):
        eval_model()(
            pixels(), bool_masked_pos=torch.zeros(BATCH, 9, dtype=torch.bool), teacher_features=teacher_features()
        )


def test_mask_of_a_floating_dtype():
    with pytest.raises(TypeError, match="must have dtype torch.bool"):
        eval_model()(pixels(), bool_masked_pos=fixed_mask().float(), teacher_features=teacher_features())


def test_mask_without_a_mask_token():
    with pytest.raises(ValueError, match="use_mask_token=True"):
        MVPModel(tiny_config(use_mask_token=False))(pixels(), bool_masked_pos=fixed_mask())
    with pytest.raises(ValueError, match="use_mask_token=True"):
        MVPForPreTraining(tiny_config(use_mask_token=False))


def test_too_many_masked_patches_for_the_input():
    with pytest.raises(ValueError, match="num_masking_patches=20 does not fit an input with 16 patches"):
        eval_model(num_masking_patches=20)(pixels(), teacher_features=teacher_features())


# --- configuration --------------------------------------------------------------------------------------------------


def test_presets_follow_the_paper():
    base, large = MVPConfig.from_preset("base"), MVPConfig.from_preset("large")
    assert (base.hidden_size, base.num_hidden_layers, base.num_attention_heads, base.patch_size) == (768, 12, 12, 16)
    assert (large.hidden_size, large.num_hidden_layers, large.num_attention_heads) == (1024, 24, 16)
    assert base.image_size == large.image_size == 224 and base.teacher_dim == large.teacher_dim == 512
    assert base.num_masked_for(196) == 75 and base.loss_type == "cosine"
    assert set(MVP_PRESETS) == {"base", "large", "tiny"}
    with pytest.raises(ValueError, match="Unknown MVP preset"):
        MVPConfig.from_preset("huge")


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"hidden_size": 30}, "multiple of num_attention_heads"),
        ({"image_size": 30}, "divisible by patch_size"),
        ({"loss_type": "kl"}, "loss_type must be one of"),
        ({"mask_ratio": 1.5}, "mask_ratio must lie in"),
    ],
)
def test_invalid_configs_are_rejected(overrides, message):
    with pytest.raises(StrictDataclassClassValidationError, match=message):
        tiny_config(**overrides)


def test_layer_ids_for_lr_decay():
    model = MVPForPreTraining(tiny_config())
    depth = model.config.num_hidden_layers
    assert model.num_lr_decay_layers == depth + 2
    ids = {name: model.get_layer_id_for_lr_decay(name) for name, _ in model.named_parameters()}
    assert ids["mvp.embeddings.cls_token"] == ids["mvp.embeddings.patch_embeddings.projection.weight"] == 0
    assert ids["mvp.layers.0.attention.q_proj.weight"] == 1 and ids[f"mvp.layers.{depth - 1}.mlp.fc2.bias"] == depth
    assert (
        ids["head.projection.weight"]
        == ids["mvp.shared_relative_position_bias.relative_position_bias_table"]
        == depth + 1
    )
    assert set(ids.values()) == set(range(depth + 2))
    assert "mvp.embeddings.mask_token" in model.no_weight_decay()


def test_a_teacher_of_another_width_is_refused_naming_the_override():
    teacher = torch.nn.Identity()
    teacher.feature_dim = 7
    model = MVPForPreTraining(tiny_config())
    with pytest.raises(
        ValueError, match=r"7-d features but config.teacher_dim is 24.*--config_overrides teacher_dim=7"
    ):
        model.set_teacher(teacher)
    assert model.teacher is None
    model.set_teacher(teacher, name="extra")  # only the default slot gives the targets
    assert model.get_teacher("extra") is teacher
