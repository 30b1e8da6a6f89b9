"""Image processor for InternImage (PIL backend; no torchvision needed)."""

from transformers.image_processing_backends import PilBackend
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, PILImageResampling


class InternImageImageProcessor(PilBackend):
    """Resizes to 224x224 (bicubic, the original's interpolation), rescales to [0, 1] and normalises with the ImageNet
    mean/std, as the original's classification pipeline. Checkpoints trained at other resolutions (L/XL 384, H 640,
    G 512) are converted with their size in `size`."""

    resample = PILImageResampling.BICUBIC
    image_mean = IMAGENET_DEFAULT_MEAN
    image_std = IMAGENET_DEFAULT_STD
    size = {"height": 224, "width": 224}
    do_resize = True
    do_rescale = True
    do_normalize = True


__all__ = ["InternImageImageProcessor"]
