"""transformers' ImageProcessingTestMixin on InternImageImageProcessor (PIL backend). Harness: tests/hf_testers.py."""

from __future__ import annotations

import unittest

from hf_unified_pretrain.models.internimage import InternImageImageProcessor
from tests.hf_testers import ImageProcessingTestMixin, PilImageProcessingTester, PilOnlyImageProcessingOverrides


class InternImageImageProcessingTester(PilImageProcessingTester):
    image_processing_classes_by_backend = {"pil": InternImageImageProcessor}

    def __init__(self, parent, **kwargs):
        kwargs.setdefault("size", {"height": 18, "width": 18})
        super().__init__(parent, min_resolution=30, max_resolution=60, **kwargs)


class InternImageImageProcessingTest(PilOnlyImageProcessingOverrides, ImageProcessingTestMixin, unittest.TestCase):
    image_processor_tester_class = InternImageImageProcessingTester
