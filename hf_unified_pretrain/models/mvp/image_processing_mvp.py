"""Image processor for MVP students (PIL backend; no torchvision needed)."""

from transformers.image_processing_backends import PilBackend
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, PILImageResampling


class MVPImageProcessor(PilBackend):
    """Resizes to 224x224 (bicubic), rescales to [0, 1] and normalises with the ImageNet mean/std.

    The student sees ImageNet-normalised pixels as in iTPN-CLIP and BEiT-v2, MVP's closest public lineage; the frozen
    CLIP teacher re-normalises the same pixels with CLIP's own mean/std (the teacher wrapper undoes this
    normalisation first), so the student's statistics need not match the teacher's. Checkpoints converted from a
    BEiT folder keep that folder's mean/std (BEiT-v1 used 0.5/0.5). For a model of another resolution,
    `hf_unified_pretrain.models.registry.image_processor_for(config)` resizes to the config's `image_size` (what
    converters and run scripts save with a checkpoint).
    """

    # Grayscale, RGBA, CMYK and palette images become RGB, so any photo a user opens works (as CLIP's).
    do_convert_rgb = True
    resample = PILImageResampling.BICUBIC
    image_mean = IMAGENET_DEFAULT_MEAN
    image_std = IMAGENET_DEFAULT_STD
    size = {"height": 224, "width": 224}
    do_resize = True
    do_rescale = True
    do_normalize = True


__all__ = ["MVPImageProcessor"]
