"""The shared pixel-input check (`layers.patch_grid_of`), alone and as both models use it."""

import pytest
import torch

from hf_unified_pretrain.layers import RAW_PIXEL_THRESHOLD, patch_grid_of
from hf_unified_pretrain.models.itpn import ITPNConfig, ITPNModel
from hf_unified_pretrain.models.mvp import MVPConfig, MVPModel


def tiny_itpn() -> ITPNModel:
    config = ITPNConfig(
        image_size=32, hidden_size=32, stage1_depth=1, stage2_depth=1, num_hidden_layers=1, num_attention_heads=2,
        fpn_dim=16, fpn_depth=1,
    )  # fmt: skip
    return ITPNModel(config).eval()


def tiny_mvp() -> MVPModel:
    return MVPModel(MVPConfig.from_preset("tiny")).eval()


MODELS = {"itpn": tiny_itpn, "mvp": tiny_mvp}


def normalised(batch: int = 2, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(0)).clamp(-2, 2).to(dtype)


def test_grid_of_a_non_square_batch():
    assert patch_grid_of(torch.zeros(1, 3, 24, 40), 3, 8, dtype=torch.float32) == (3, 5)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int64])
def test_integer_pixels_are_rejected_with_the_fix(dtype):
    with pytest.raises(TypeError, match=rf"dtype {dtype}.*not raw integer intensities.*image processor"):
        patch_grid_of(torch.zeros(1, 3, 16, 16, dtype=dtype), 3, 8, dtype=torch.float32)


def test_float_pixels_in_0_255_are_rejected_but_normalised_ones_pass():
    raw = torch.full((1, 3, 16, 16), 3.0)
    raw[0, 0, 0, 0] = 200.0
    with pytest.raises(ValueError, match=r"\[3, 200\].*raw 0\.\.255.*image processor"):
        patch_grid_of(raw, 3, 8, dtype=torch.float32)
    # the bound is strict: a non-negative batch just at the threshold, and a negative one beyond it, pass
    assert patch_grid_of(torch.full((1, 3, 16, 16), RAW_PIXEL_THRESHOLD), 3, 8, dtype=torch.float32) == (2, 2)
    assert patch_grid_of(raw - 4.0, 3, 8, dtype=torch.float32) == (2, 2)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_pixels_are_rejected(bad):
    pixels = torch.zeros(1, 3, 16, 16)
    pixels[0, 2, 5, 7] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        patch_grid_of(pixels, 3, 8, dtype=torch.float32)


@pytest.mark.parametrize(
    "pixel_dtype,model_dtype",
    [(torch.float64, torch.float32), (torch.bfloat16, torch.float32), (torch.float16, torch.bfloat16)],
)
def test_dtype_mismatch_names_both_dtypes_and_the_cast(pixel_dtype, model_dtype):
    with pytest.raises(TypeError, match=rf"dtype {pixel_dtype} but the model's weights are {model_dtype}.*\.to\("):
        patch_grid_of(torch.zeros(1, 3, 16, 16, dtype=pixel_dtype), 3, 8, dtype=model_dtype)


def test_float32_pixels_for_a_16_bit_model_and_any_pixels_under_autocast_pass():
    assert patch_grid_of(torch.zeros(1, 3, 16, 16), 3, 8, dtype=torch.bfloat16) == (2, 2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert patch_grid_of(torch.zeros(1, 3, 16, 16, dtype=torch.bfloat16), 3, 8, dtype=torch.float32) == (2, 2)


def test_empty_batch_and_empty_images_are_rejected():
    with pytest.raises(ValueError, match="empty batch"):
        patch_grid_of(torch.zeros(0, 3, 16, 16), 3, 8)
    with pytest.raises(ValueError, match="empty images"):
        patch_grid_of(torch.zeros(1, 3, 0, 16), 3, 8)


def test_channel_errors_give_the_fix_for_their_direction():
    # A grayscale batch into an RGB model: the processors' RGB conversion (their default) is the fix.
    with pytest.raises(ValueError, match="has 1 channels but the model expects 3") as rgb:
        patch_grid_of(torch.zeros(1, 1, 16, 16), 3, 8)
    assert "do_convert_rgb=True" in str(rgb.value) and "image.convert('RGB')" in str(rgb.value)
    # RGB pixels into a 1-channel model: the processor must NOT convert to RGB and needs 1-value statistics.
    with pytest.raises(ValueError, match="has 3 channels but the model expects 1") as gray:
        patch_grid_of(torch.zeros(1, 3, 16, 16), 1, 8)
    message = str(gray.value)
    assert "do_convert_rgb=False" in message and "1-value image_mean" in message and "num_channels=3" in message


def test_without_a_dtype_only_the_structure_is_checked():
    # the entry points check the structure; the value check runs once, where pixels enter the projection
    assert patch_grid_of(torch.full((1, 3, 16, 16), 255.0), 3, 8) == (2, 2)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_both_models_reject_bad_pixels_before_the_projection(name):
    model = MODELS[name]()
    with torch.no_grad():
        assert model(normalised()).last_hidden_state.shape[0] == 2
        with pytest.raises(TypeError, match="raw integer intensities"):
            model((normalised() * 50 + 100).clamp(0, 255).to(torch.uint8))
        with pytest.raises(ValueError, match="raw 0..255"):
            model((normalised() * 50 + 100).clamp(0, 255))
        with pytest.raises(TypeError, match="torch.float64 but the model's weights are torch.float32"):
            model(normalised(dtype=torch.float64))
        nan = normalised()
        nan[1, 0, 3, 3] = float("nan")
        with pytest.raises(ValueError, match="NaN or infinite"):
            model(nan)
        with pytest.raises(ValueError, match="empty batch"):
            model(normalised(batch=0))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_a_bfloat16_model_takes_the_processors_float32_pixels(name):
    model = MODELS[name]().to(torch.bfloat16)
    with torch.no_grad():
        output = model(normalised())
    assert output.last_hidden_state.dtype == torch.bfloat16


def test_the_value_scan_is_skipped_only_in_training_on_an_accelerator():
    # meta tensors stand in for an accelerator: reading their values (the host sync) raises, so a returned grid
    # proves the scan was skipped, and the error proves an eval-mode call does scan.
    meta = torch.zeros(1, 3, 16, 16, device="meta")
    assert patch_grid_of(meta, 3, 8, dtype=torch.float32, training=True) == (2, 2)
    with pytest.raises((NotImplementedError, RuntimeError), match="meta"):
        patch_grid_of(meta, 3, 8, dtype=torch.float32, training=False)
    # dtype checks read metadata only and still run; CPU batches are scanned in training too (no sync there)
    with pytest.raises(TypeError, match="raw integer intensities"):
        patch_grid_of(meta.to(torch.uint8), 3, 8, dtype=torch.float32, training=True)
    with pytest.raises(ValueError, match="raw 0..255"):
        patch_grid_of(torch.full((1, 3, 16, 16), 255.0), 3, 8, dtype=torch.float32, training=True)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_both_models_pass_their_training_flag_to_the_check(name):
    # on the meta device a value scan raises: eval mode scans, training mode (the Trainer's hot loop) does not
    model = MODELS[name]().to("meta")
    pixels = normalised().to("meta")
    with torch.no_grad():
        with pytest.raises((NotImplementedError, RuntimeError), match="meta"):
            model(pixels)
        assert model.train()(pixels).last_hidden_state.shape[0] == 2
