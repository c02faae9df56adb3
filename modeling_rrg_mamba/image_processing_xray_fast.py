"""Fast (torchvision-backend) chest X-ray image processor: the same outputs as `XrayImageProcessor`, less work.

`XrayImageProcessorFast` reads films with the same `load_xray_image` (so PNG / JPEG / DICOM, 16-bit windowing and
the size checks behave alike) and differs only in how it does the arithmetic:

* a grayscale film is resized as one channel and repeated to three afterwards (the slow processor resizes three
  identical channels);
* at evaluation, films of the same size are resized together, as one batch (``F.interpolate``, bilinear with
  antialiasing, as the slow one), and normalised in one fused multiply-add;
* training augmentation (resize of the shorter side, random crop, random flip) draws its random numbers from the same
  seeded ``torch.Generator`` in the same order as the slow processor, so the crops and flips are the same.

The outputs equal the slow processor's to float rounding (the tests check ``atol=1e-5``). On transformers 5 it is a
``TorchvisionBackend`` (AutoImageProcessor's default "torchvision" backend), on 4.57 a ``BaseImageProcessorFast``;
see `modeling_rrg_mamba._compat`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from transformers.image_processing_utils import BaseImageProcessor, BatchFeature

from ._compat import FastImageProcessorBase
from .image_processing_xray import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    XrayImageProcessor,
    XrayImageSource,
    flatten_studies,
    group_views,
    load_xray_image,
)


class XrayImageProcessorFast(FastImageProcessorBase):
    r"""
    Fast version of [`XrayImageProcessor`] (same arguments, same outputs): chest X-ray preprocessing with R2Gen's
    convention, batched in torch.

    Args:
        size (`int`, defaults to 256): training-time resize of the shorter side, before the random crop.
        crop_size (`int`, defaults to 224): side of the square model input.
        do_train_augmentation (`bool`, defaults to `False`): training mode (resize, random crop, random flip).
        flip_probability (`float`, defaults to 0.5): chance of the horizontal flip in training mode.
        do_normalize (`bool`, defaults to `True`): subtract `image_mean`, divide by `image_std`.
        image_mean / image_std (`tuple[float, float, float]`): per-channel statistics (ImageNet by default).
        seed (`int`, *optional*): seed of the augmentation's random generator.
    """

    model_input_names = ["pixel_values"]
    slow_image_processor_class = XrayImageProcessor

    def __init__(
        self,
        size: int = 256,
        crop_size: int = 224,
        do_train_augmentation: bool = False,
        flip_probability: float = 0.5,
        do_normalize: bool = True,
        image_mean: Sequence[float] = IMAGENET_MEAN,
        image_std: Sequence[float] = IMAGENET_STD,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        # The backends' own __init__ turns size / crop_size into size dicts and sets their generic defaults; this
        # processor keeps the slow one's plain integers, so it starts from BaseImageProcessor.
        BaseImageProcessor.__init__(self, **kwargs)
        XrayImageProcessor._set_settings(
            self, size, crop_size, do_train_augmentation, flip_probability, do_normalize, image_mean, image_std, seed
        )

    def to_dict(self) -> dict[str, Any]:
        output = BaseImageProcessor.to_dict(self)
        for private in ("_generator", "_valid_kwargs_names", "_processor_class"):
            output.pop(private, None)
        return output

    # --- reading -------------------------------------------------------------------------------------------------

    @staticmethod
    def _to_tensor(source: XrayImageSource) -> torch.Tensor:
        """``(C, H, W)`` float32 in [0, 1], C = 1 for a grayscale film (repeated to 3 channels later), else 3."""
        array = load_xray_image(source)
        tensor = torch.from_numpy(np.ascontiguousarray(array))
        return tensor.unsqueeze(0) if tensor.ndim == 2 else tensor.permute(2, 0, 1)

    # --- arithmetic ------------------------------------------------------------------------------------------------

    @staticmethod
    def _resize(images: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """``(N, C, H, W)`` -> ``(N, C, height, width)``: bilinear with antialiasing, like the slow processor."""
        return F.interpolate(images, size=(height, width), mode="bilinear", align_corners=False, antialias=True)

    def _normalize(self, images: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)`` with C in (1, 3) -> ``(N, 3, H, W)``, normalised in one fused multiply-add."""
        images = images.expand(-1, 3, -1, -1)
        if not self.do_normalize:
            return images.contiguous()
        scale = 1.0 / torch.tensor(self.image_std, dtype=images.dtype).view(1, 3, 1, 1)
        shift = -torch.tensor(self.image_mean, dtype=images.dtype).view(1, 3, 1, 1) * scale
        return torch.addcmul(shift, images, scale)

    def _augment(self, image: torch.Tensor) -> torch.Tensor:
        """The slow processor's augmentation, with the same random draws in the same order."""
        height, width = image.shape[-2:]
        scale = self.size / min(height, width)
        new_height, new_width = max(self.size, round(height * scale)), max(self.size, round(width * scale))
        image = self._resize(image[None], new_height, new_width)[0]
        top = int(torch.randint(0, image.shape[-2] - self.crop_size + 1, (1,), generator=self._generator))
        left = int(torch.randint(0, image.shape[-1] - self.crop_size + 1, (1,), generator=self._generator))
        image = image[:, top : top + self.crop_size, left : left + self.crop_size]
        if float(torch.rand((), generator=self._generator)) < self.flip_probability:
            image = image.flip(-1)
        return image

    def process_batch(self, sources: Sequence[XrayImageSource], train: bool | None = None) -> torch.Tensor:
        """Images as normalised tensors ``(N, 3, crop_size, crop_size)``, in the order given."""
        train = self.do_train_augmentation if train is None else train
        images = [self._to_tensor(source) for source in sources]
        if train:
            return self._normalize(torch.stack([self._augment(image).expand(3, -1, -1) for image in images]))
        output = torch.empty(len(images), 3, self.crop_size, self.crop_size)
        groups: dict[tuple[int, ...], list[int]] = defaultdict(list)
        for index, image in enumerate(images):
            groups[tuple(image.shape)].append(index)
        for indices in groups.values():
            stacked = torch.stack([images[i] for i in indices])
            output[indices] = self._normalize(self._resize(stacked, self.crop_size, self.crop_size))
        return output

    def process_one(self, source: XrayImageSource, train: bool | None = None) -> torch.Tensor:
        """One image as a normalised tensor (3, crop_size, crop_size)."""
        return self.process_batch([source], train)[0]

    def preprocess(
        self,
        images: XrayImageSource | Sequence[XrayImageSource] | Sequence[Sequence[XrayImageSource]],
        do_train_augmentation: bool | None = None,
        return_tensors: str | None = "pt",
        **kwargs: Any,
    ) -> BatchFeature:
        """Same inputs and outputs as `XrayImageProcessor.preprocess`."""
        films, views = flatten_studies(images, return_tensors)
        return BatchFeature({"pixel_values": group_views(self.process_batch(films, do_train_augmentation), views)})

    def __call__(self, images: Any = None, *args: Any, **kwargs: Any) -> BatchFeature:
        return self.preprocess(images, *args, **kwargs)


__all__ = ["XrayImageProcessorFast"]
