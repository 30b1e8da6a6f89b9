"""Shared data library: dataset loading, transforms without torchvision, robust decoding and collators.

Typical use in a run script::

    datasets = load_pretraining_dataset(dataset_name, train_dir=train_dir)       # or nothing: embedded default
    train_tf = PretrainingTransform.from_image_processor(image_processor)
    eval_tf = EvalTransform.from_image_processor(image_processor)
    datasets, skipped = attach_transforms(datasets, train_tf, eval_tf)           # unreadable images: skipped+counted
    collator = MaskedImageCollator(RandomMaskGenerator(num_tokens, mask_ratio))
    trainer = Trainer(..., data_collator=collator, callbacks=[SkippedImagesCallback(skipped)])

(with `remove_unused_columns=False`, which the `set_transform` pattern needs).
"""

from .collators import AllImagesUnreadableError, MaskedImageCollator
from .decoding import (
    IMAGE_COLUMN,
    ImageBatchTransform,
    SkippedImageCounter,
    SkippedImagesCallback,
    UnreadableImageError,
    attach_transform,
    attach_transforms,
    decode_image,
    to_rgb,
)
from .embedded import EMBEDDED_SOURCES, load_embedded_dataset, load_embedded_photographs
from .loading import EmptyImageDatasetError, load_pretraining_dataset, resolve_image_column
from .mixing import mix_images, partner_indices
from .multimodal import (
    ModalityField,
    MultiModalCollator,
    MultiModalTransform,
    attach_multimodal_transform,
    load_multimodal_folder,
)
from .randomness import SeededRandomness
from .real_datasets import (
    CIFAR10_CLASSES,
    COCO_BACKGROUND,
    COCO_IGNORE_INDEX,
    coco_category_to_label,
    coco_id2label,
    decode_uncompressed_rle,
    default_data_cache_dir,
    extract_archive,
    extract_cifar10_jpeg,
    find_archive,
    load_cifar10_jpeg,
    load_tiny_coco,
    rasterize_coco_semantic_map,
    tiny_coco_id2label,
)
from .transforms import (
    EvalTransform,
    PretrainingTransform,
    image_size_from_processor,
    pil_to_normalized_tensor,
    sample_resized_crop_box,
    to_size_tuple,
)
from .two_view import TwoViewCollator, TwoViewTransform

__all__ = [
    "CIFAR10_CLASSES",
    "COCO_BACKGROUND",
    "COCO_IGNORE_INDEX",
    "EMBEDDED_SOURCES",
    "IMAGE_COLUMN",
    "AllImagesUnreadableError",
    "EmptyImageDatasetError",
    "EvalTransform",
    "ImageBatchTransform",
    "MaskedImageCollator",
    "ModalityField",
    "MultiModalCollator",
    "MultiModalTransform",
    "PretrainingTransform",
    "SeededRandomness",
    "SkippedImageCounter",
    "SkippedImagesCallback",
    "TwoViewCollator",
    "TwoViewTransform",
    "UnreadableImageError",
    "attach_multimodal_transform",
    "attach_transform",
    "attach_transforms",
    "coco_category_to_label",
    "coco_id2label",
    "decode_image",
    "decode_uncompressed_rle",
    "default_data_cache_dir",
    "extract_archive",
    "extract_cifar10_jpeg",
    "find_archive",
    "image_size_from_processor",
    "load_cifar10_jpeg",
    "load_embedded_dataset",
    "load_embedded_photographs",
    "load_multimodal_folder",
    "load_pretraining_dataset",
    "load_tiny_coco",
    "mix_images",
    "partner_indices",
    "pil_to_normalized_tensor",
    "rasterize_coco_semantic_map",
    "resolve_image_column",
    "sample_resized_crop_box",
    "tiny_coco_id2label",
    "to_rgb",
    "to_size_tuple",
]
