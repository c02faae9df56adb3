"""RRG-Mamba's image processor: the shared chest X-ray processor with R2Gen's settings."""

from __future__ import annotations

from ..image_processing_xray import XrayImageProcessor
from ..image_processing_xray_fast import XrayImageProcessorFast


class RRGMambaImageProcessor(XrayImageProcessor):
    r"""
    [`XrayImageProcessor`] with RRG-Mamba's (R2Gen's) defaults: training resize 256 / random crop 224 / random
    horizontal flip, evaluation resize 224 x 224, ImageNet normalisation. Give several views per study as a list
    of lists to get ``pixel_values`` (B, V, 3, 224, 224) (IU X-Ray: frontal and lateral).
    """


class RRGMambaImageProcessorFast(XrayImageProcessorFast):
    """Fast (torchvision-backend) [`RRGMambaImageProcessor`]: the same outputs, computed with torch ops."""

    slow_image_processor_class = RRGMambaImageProcessor


__all__ = ["RRGMambaImageProcessor", "RRGMambaImageProcessorFast"]
