"""FrozenTeacher: same numbers as a manual CLIP computation, frozen, resized to a grid, clear errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from transformers import CLIPVisionModelWithProjection
from transformers.utils.constants import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

from hf_unified_pretrain.teachers import FrozenTeacher

from .conftest import TEACHER_MEAN, TEACHER_STD


def _channel(values) -> torch.Tensor:
    return torch.tensor(values).view(1, 3, 1, 1)


def _to_teacher_pixels(pixel_values, teacher_mean=TEACHER_MEAN, teacher_std=TEACHER_STD):
    raw = pixel_values * _channel(IMAGENET_DEFAULT_STD) + _channel(IMAGENET_DEFAULT_MEAN)
    return (raw - _channel(teacher_mean)) / _channel(teacher_std)


def _manual_projected_tokens(folder, teacher_pixels, **kwargs):
    reference = CLIPVisionModelWithProjection.from_pretrained(folder).eval()
    with torch.no_grad():
        tokens = reference.vision_model(pixel_values=teacher_pixels, **kwargs).last_hidden_state[:, 1:]
        return reference.visual_projection(reference.vision_model.post_layernorm(tokens))


def test_projected_patch_tokens_match_manual_computation(clip_folder):
    teacher = FrozenTeacher.from_pretrained(clip_folder)
    pixel_values = torch.randn(2, 3, 32, 32)

    features = teacher(pixel_values)

    expected = _manual_projected_tokens(clip_folder, _to_teacher_pixels(pixel_values))
    assert features.shape == (2, 16, 16)
    torch.testing.assert_close(features, expected)
    assert teacher.feature_dim == 16
    assert teacher.grid_size == (4, 4)


def test_ready_teacher_pixel_values_are_used_as_given(clip_folder):
    teacher = FrozenTeacher.from_pretrained(clip_folder)
    teacher_pixels = torch.randn(2, 3, 32, 32)

    features = teacher(torch.zeros(2, 3, 32, 32), teacher_pixel_values=teacher_pixels)

    torch.testing.assert_close(features, _manual_projected_tokens(clip_folder, teacher_pixels))


def test_clip_normalisation_is_the_default_without_preprocessor_config(tmp_path):
    from .conftest import tiny_clip_vision

    tiny_clip_vision().save_pretrained(tmp_path)
    teacher = FrozenTeacher.from_pretrained(tmp_path)
    pixel_values = torch.randn(1, 3, 32, 32)

    expected = _manual_projected_tokens(tmp_path, _to_teacher_pixels(pixel_values, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD))
    torch.testing.assert_close(teacher(pixel_values), expected)


def test_other_features(clip_folder):
    pixel_values = torch.randn(2, 3, 32, 32)
    reference = CLIPVisionModelWithProjection.from_pretrained(clip_folder).eval()
    with torch.no_grad():
        hidden = reference.vision_model(pixel_values=_to_teacher_pixels(pixel_values)).last_hidden_state[:, 1:]

    raw = FrozenTeacher.from_pretrained(clip_folder, feature="last_hidden_state")(pixel_values)
    normed = FrozenTeacher.from_pretrained(clip_folder, feature="patch_tokens")(pixel_values)

    torch.testing.assert_close(raw, hidden)
    torch.testing.assert_close(normed, reference.vision_model.post_layernorm(hidden))
    assert FrozenTeacher.from_pretrained(clip_folder, feature="patch_tokens").feature_dim == 32


def test_frozen_and_always_in_eval_mode(clip_folder):
    teacher = FrozenTeacher.from_pretrained(clip_folder)

    teacher.train()

    assert not teacher.training
    assert all(not module.training for module in teacher.modules())
    assert all(not parameter.requires_grad for parameter in teacher.parameters())
    features = teacher(torch.randn(1, 3, 32, 32, requires_grad=True))
    assert not features.requires_grad


def test_resize_to_target_grid(clip_folder):
    teacher = FrozenTeacher.from_pretrained(clip_folder, target_grid=3)
    pixel_values = torch.randn(2, 3, 32, 32)

    features = teacher(pixel_values)

    resized = F.interpolate(_to_teacher_pixels(pixel_values), size=(24, 24), mode="bicubic", align_corners=False)
    expected = _manual_projected_tokens(clip_folder, resized, interpolate_pos_encoding=True)
    assert features.shape == (2, 9, 16)
    assert teacher.grid_size == (3, 3)
    torch.testing.assert_close(features, expected)


def test_any_vision_model_through_auto_class(vit_folder):
    from transformers import ViTModel

    teacher = FrozenTeacher.from_pretrained(
        vit_folder, model_class="AutoModel", feature="patch_tokens", input_mean=[0.5] * 3, input_std=[0.5] * 3
    )
    pixel_values = torch.randn(2, 3, 32, 32)

    reference = ViTModel.from_pretrained(vit_folder, add_pooling_layer=False).eval()
    raw = pixel_values * 0.5 + 0.5
    teacher_pixels = (raw - _channel(OPENAI_CLIP_MEAN)) / _channel(OPENAI_CLIP_STD)
    with torch.no_grad():
        expected = reference(pixel_values=teacher_pixels).last_hidden_state[:, 1:]
    torch.testing.assert_close(teacher(pixel_values), expected)
    assert teacher.feature_dim == 32


def test_missing_folder_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json and model.safetensors; the Hub is not used"):
        FrozenTeacher.from_pretrained(tmp_path / "does-not-exist")
    with pytest.raises(FileNotFoundError, match="the Hub is not used"):
        FrozenTeacher.from_pretrained("openai/clip-vit-base-patch16")


def test_text_model_folder_error(text_folder):
    with pytest.raises(ValueError, match="not a vision model"):
        FrozenTeacher.from_pretrained(text_folder)


def test_unknown_feature_error(clip_folder):
    with pytest.raises(ValueError, match="Unknown teacher feature 'cls'"):
        FrozenTeacher.from_pretrained(clip_folder, feature="cls")


def test_projection_needs_a_projection_layer(vit_folder):
    with pytest.raises(ValueError, match="visual_projection"):
        FrozenTeacher.from_pretrained(vit_folder, model_class="ViTModel")


def test_input_not_divisible_by_teacher_patch(clip_folder):
    teacher = FrozenTeacher.from_pretrained(clip_folder)
    with pytest.raises(ValueError, match="target_grid"):
        teacher(torch.randn(1, 3, 30, 30))


def test_full_clip_folder_through_vision_class_or_dual_encoder(tmp_path):
    """A whole CLIP (text + vision) folder works with the default vision-only class and with CLIPModel."""
    from transformers import CLIPConfig, CLIPModel

    config = CLIPConfig(
        text_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2},
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 4,
            "image_size": 32,
            "patch_size": 8,
        },
        projection_dim=24,
    )
    clip = CLIPModel(config).eval()
    clip.save_pretrained(tmp_path)
    pixel_values = torch.randn(2, 3, 32, 32)

    vision_only = FrozenTeacher.from_pretrained(tmp_path)
    dual = FrozenTeacher.from_pretrained(tmp_path, model_class="CLIPModel")

    teacher_pixels = _to_teacher_pixels(pixel_values, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD)
    with torch.no_grad():
        tokens = clip.vision_model(pixel_values=teacher_pixels).last_hidden_state[:, 1:]
        expected = clip.visual_projection(clip.vision_model.post_layernorm(tokens))
    assert vision_only.feature_dim == dual.feature_dim == 24
    torch.testing.assert_close(vision_only(pixel_values), expected)
    torch.testing.assert_close(dual(pixel_values), expected)


def test_pickle_weights_are_never_loaded(tmp_path):
    """A folder with only `pytorch_model.bin` is refused before anything is unpickled."""
    from .conftest import tiny_clip_vision

    model = tiny_clip_vision()
    model.config.save_pretrained(tmp_path)
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        FrozenTeacher.from_pretrained(tmp_path)


@pytest.fixture(scope="module")
def resnet_folder(tmp_path_factory):
    """A tiny convolutional teacher (no patch_size): 32 px in, a (16, 4, 4) map out."""
    from transformers import ResNetConfig, ResNetModel

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("resnet_teacher")
    config = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic")
    ResNetModel(config).eval().save_pretrained(folder)
    return folder


def _bins(size: int, cells: int) -> list[tuple[int, int]]:
    """Adaptive-pooling bins written out: cell i covers [floor(i * size / cells), ceil((i + 1) * size / cells))."""
    return [(i * size // cells, -(-(i + 1) * size // cells)) for i in range(cells)]


def test_feature_map_teacher_is_pooled_onto_the_student_grid(resnet_folder):
    from transformers import ResNetModel

    teacher = FrozenTeacher.from_pretrained(
        resnet_folder, model_class="AutoModel", feature="last_hidden_state", target_grid=(2, 3)
    )
    assert teacher.is_feature_map_model and teacher.grid_size == (2, 3) and teacher.feature_dim == 16
    pixel_values = torch.randn(2, 3, 32, 32)
    features = teacher(pixel_values)

    reference = ResNetModel.from_pretrained(resnet_folder).eval()
    with torch.no_grad():  # no resize for a feature-map teacher: the student's 32 px, in CLIP normalisation
        feature_map = reference(pixel_values=_to_teacher_pixels(pixel_values, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD))
    feature_map = feature_map.last_hidden_state
    assert feature_map.shape[-2:] == (4, 4)
    expected = torch.stack(
        [
            feature_map[:, :, top:bottom, left:right].mean(dim=(2, 3))
            for top, bottom in _bins(4, 2)
            for left, right in _bins(4, 3)  # overlapping bins: columns 0-1, 1-2, 2-3
        ],
        dim=1,
    )
    assert features.shape == (2, 6, 16)
    torch.testing.assert_close(features, expected)


def test_a_global_feature_map_is_repeated_on_every_token(tmp_path):
    """AMDIM's r1 is a 1x1 map at its nominal size: every student token gets the image's global feature."""
    from hf_unified_pretrain.models.amdim import AMDIMConfig, AMDIMModel

    torch.manual_seed(0)
    model = AMDIMModel(AMDIMConfig.from_preset("tiny")).eval()
    model.save_pretrained(tmp_path)
    teacher = FrozenTeacher.from_pretrained(
        tmp_path, model_class="AutoModel", feature="last_hidden_state", target_grid=3
    )
    pixel_values = torch.randn(2, 3, 32, 32)
    features = teacher(pixel_values)
    with torch.no_grad():
        global_feature = model(pixel_values=teacher.prepare_pixels(pixel_values)).pooler_output
    assert features.shape == (2, 9, model.config.n_rkhs) and teacher.feature_dim == model.config.n_rkhs
    torch.testing.assert_close(features, global_feature[:, None].expand(-1, 9, -1))
    local = FrozenTeacher.from_pretrained(tmp_path, model_class="AutoModel", feature="local_features_7", target_grid=3)
    assert local(pixel_values).shape == (2, 9, model.config.n_rkhs)
    assert not torch.allclose(local(pixel_values)[:, 0], local(pixel_values)[:, 8])  # a local map varies over tokens


def test_feature_map_teacher_errors(resnet_folder):
    with pytest.raises(ValueError, match="pass `target_grid`"):
        FrozenTeacher.from_pretrained(resnet_folder, model_class="AutoModel", feature="last_hidden_state")
    with pytest.raises(ValueError, match="needs a vision transformer"):
        FrozenTeacher.from_pretrained(resnet_folder, model_class="AutoModel", feature="patch_tokens", target_grid=2)
    misspelt = FrozenTeacher.from_pretrained(
        resnet_folder, model_class="AutoModel", feature="last_hiden", target_grid=2
    )
    with pytest.raises(ValueError, match=r"'last_hiden' of ResNetModel must be a \(B, C, h, w\) map \(got NoneType\)"):
        misspelt(torch.randn(1, 3, 32, 32))
