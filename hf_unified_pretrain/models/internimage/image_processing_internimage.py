"""Image processor for InternImage (PIL backend; no torchvision needed)."""

from transformers.image_processing_backends import PilBackend
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, PILImageResampling


class InternImageImageProcessor(PilBackend):
    """Evaluation transform of the original classification code (`TEST.CROP = True`, its default): bicubic resize of
    the shorter side to the model's size, center crop to a square of that size (crop ratio 1.0, not timm's 0.875),
    rescale to [0, 1], ImageNet mean/std. The original's Hub processors for the 384-pixel models say the same
    (shortest edge 384, crop 384).

    These defaults fit the 224-pixel models; `hf_unified_pretrain.models.registry.image_processor_for(config)` keeps
    the ratio at the config's `image_size` (L/XL 384, H 640, G 512 checkpoints are converted with their size)."""

    # Grayscale, RGBA, CMYK and palette images become RGB, so any photo a user opens works (as CLIP's).
    do_convert_rgb = True
    resample = PILImageResampling.BICUBIC
    image_mean = IMAGENET_DEFAULT_MEAN
    image_std = IMAGENET_DEFAULT_STD
    size = {"shortest_edge": 224}
    crop_size = {"height": 224, "width": 224}
    do_resize = True
    do_center_crop = True
    do_rescale = True
    do_normalize = True


__all__ = ["InternImageImageProcessor"]
