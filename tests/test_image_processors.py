"""The image processor saved with every checkpoint (converters, run scripts) feeds the model exactly its own
resolution: `AutoImageProcessor` and `pipeline("image-feature-extraction")` on a saved folder, at sizes other than
the processor classes' 224 default, for every registered method."""

import numpy as np
import pytest
import torch
from huggingface_hub.errors import StrictDataclassClassValidationError
from PIL import Image
from transformers import AutoImageProcessor, AutoModel, pipeline

from hf_unified_pretrain.models.registry import fit_image_processor, image_processor_for
from tests.registry_helpers import method_params

# None: the test preset's own size; 64 and 96 differ from it and from the processor classes' 224 default.
SIZES = [None, 64, 96]


def _config(entry, size):
    """The method's test preset at `size`; a skip when the method's config rejects that size (e.g. AMDIM builds only
    its original 32/64/128 layouts, with width constraints)."""
    config_class = entry.load("config")
    if size is None:
        return config_class.from_preset(entry.test_preset)
    try:
        return config_class.from_preset(entry.test_preset, image_size=size)
    except (ValueError, StrictDataclassClassValidationError) as error:
        pytest.skip(f"{entry.name}'s test preset does not build at image_size={size}: {error}")


def _photo(width: int, height: int) -> Image.Image:
    """A non-square image with content (a constant image would hide crop/resize mistakes)."""
    generator = np.random.default_rng(0)
    return Image.fromarray(generator.integers(0, 256, size=(height, width, 3), dtype=np.uint8))


@pytest.fixture(params=method_params("image_processor", "test_preset"))
def entry(request):
    return request.param


@pytest.mark.parametrize("size", SIZES)
def test_saved_folder_feeds_the_model_its_own_resolution(entry, size, tmp_path):
    config = _config(entry, size)
    size = config.image_size if isinstance(config.image_size, int) else config.image_size[0]
    model = AutoModel.from_config(config).eval()
    model.save_pretrained(tmp_path)
    image_processor_for(config).save_pretrained(tmp_path)
    image = _photo(2 * size + 7, size + 13)

    processor = AutoImageProcessor.from_pretrained(tmp_path)
    assert type(processor) is entry.load("image_processor")
    pixel_values = processor(image, return_tensors="pt").pixel_values
    assert pixel_values.shape == (1, 3, size, size)
    with torch.no_grad():
        expected = model(pixel_values).last_hidden_state

    extractor = pipeline("image-feature-extraction", model=str(tmp_path), device="cpu")
    features = extractor(image, return_tensors=True)
    torch.testing.assert_close(features, expected)


@pytest.mark.parametrize("size", SIZES)
def test_a_default_processor_fitted_to_a_config_matches_its_image_size(entry, size):
    config = _config(entry, size)
    size = config.image_size if isinstance(config.image_size, int) else config.image_size[0]
    processor_class = entry.load("image_processor")
    default_shape = processor_class()(_photo(300, 260), return_tensors="pt").pixel_values.shape
    for processor in (image_processor_for(config), fit_image_processor(processor_class(), config)):
        out = processor(_photo(size + 31, 3 * size), return_tensors="pt").pixel_values
        assert out.shape == (1, 3, size, size)
    # Fitting changes instances only: the class keeps its released models' default.
    assert processor_class()(_photo(300, 260), return_tensors="pt").pixel_values.shape == default_shape


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "CMYK", "P"])
def test_grayscale_alpha_cmyk_and_palette_images_are_converted_to_rgb(entry, mode, tmp_path):
    config = _config(entry, None)
    size = config.image_size if isinstance(config.image_size, int) else config.image_size[0]
    image_processor_for(config).save_pretrained(tmp_path)
    processor = AutoImageProcessor.from_pretrained(tmp_path)  # the README's "load a model" path
    assert processor.do_convert_rgb is True and entry.load("image_processor")().do_convert_rgb is True
    image = _photo(size + 9, size + 3).convert(mode)
    pixels = processor(image, return_tensors="pt").pixel_values
    assert pixels.shape == (1, 3, size, size)
    # Same pixels as converting to RGB by hand (the alpha channel of these opaque images changes nothing).
    torch.testing.assert_close(pixels, processor(image.convert("RGB"), return_tensors="pt").pixel_values)


def test_center_crop_processors_keep_their_resize_to_crop_ratio():
    from hf_unified_pretrain.models.itpn import ITPNConfig, ITPNImageProcessor

    processor = image_processor_for(ITPNConfig.from_preset("itpn-tiny-test", image_size=96))
    assert processor.crop_size == {"height": 96, "width": 96}
    assert processor.size == {"shortest_edge": round(96 * 256 / 224)}
    assert ITPNImageProcessor.size == {"shortest_edge": 256}  # the class attribute is untouched


def test_fitting_keeps_a_loaded_processors_normalisation(tmp_path):
    from hf_unified_pretrain.models.mvp import MVPConfig, MVPImageProcessor

    MVPImageProcessor(image_mean=[0.5, 0.5, 0.5], image_std=[0.25, 0.25, 0.25]).save_pretrained(tmp_path)
    processor = fit_image_processor(
        MVPImageProcessor.from_pretrained(tmp_path), MVPConfig.from_preset("tiny", image_size=48)
    )
    assert list(processor.image_mean) == [0.5, 0.5, 0.5] and list(processor.image_std) == [0.25, 0.25, 0.25]
    pixels = processor(Image.new("RGB", (70, 50), (255, 0, 128)), return_tensors="pt").pixel_values
    assert pixels.shape == (1, 3, 48, 48)
    torch.testing.assert_close(pixels[0, :, 0, 0], torch.tensor([2.0, -2.0, (128 / 255 - 0.5) / 0.25]))


@pytest.mark.parametrize("pretraining_entry", method_params("image_processor", "test_preset", "pretraining"))
def test_run_scripts_processor_follows_the_training_resolution(pretraining_entry):
    entry = pretraining_entry
    preset_size = entry.load("config").from_preset(entry.test_preset).image_size
    size = 64 if preset_size != 64 else 96
    try:
        _config(entry, size)
    except pytest.skip.Exception:
        size = None  # the method's own training resolution, still fitted (the processors default to 224)
    from hf_unified_pretrain.training import ModelArguments, build_model_and_processor

    model, processor = build_model_and_processor(
        ModelArguments(),
        config_class=entry.load("config"),
        processor_class=entry.load("image_processor"),
        preset=entry.test_preset,
        image_size=size,
    )
    size = size or preset_size
    assert model.config.image_size == size
    assert processor(_photo(150, 100), return_tensors="pt").pixel_values.shape == (1, 3, size, size)
