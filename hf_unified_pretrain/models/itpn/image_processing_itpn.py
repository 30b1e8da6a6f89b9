# Copyright 2025 The hf_unified_pretrain contributors. All rights reserved.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""Image processor for iTPN / HiViT / Fast-iTPN (PIL backend; no torchvision needed)."""

from transformers.image_processing_backends import PilBackend
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, PILImageResampling


class ITPNImageProcessor(PilBackend):
    """Evaluation transform of the original fine-tuning code: bicubic resize of the shorter side to 256
    (crop ratio 0.875), 224x224 center crop, rescale to [0, 1], ImageNet mean/std.

    These defaults fit the released 224-pixel models; `hf_unified_pretrain.models.registry.image_processor_for(config)`
    keeps the 0.875 ratio at the config's `image_size` (what converters and run scripts save with a checkpoint)."""

    # Grayscale, RGBA, CMYK and palette images become RGB, so any photo a user opens works (as CLIP's).
    do_convert_rgb = True
    resample = PILImageResampling.BICUBIC
    image_mean = IMAGENET_DEFAULT_MEAN
    image_std = IMAGENET_DEFAULT_STD
    size = {"shortest_edge": 256}
    crop_size = {"height": 224, "width": 224}
    do_resize = True
    do_center_crop = True
    do_rescale = True
    do_normalize = True


__all__ = ["ITPNImageProcessor"]
