"""Chest X-ray loading and preprocessing shared by RRG-Mamba and EMRRG.

`load_xray_image` turns a file (8- or 16-bit PNG in grayscale / RGB / RGBA / palette mode, JPEG, DICOM) or an
in-memory image into a ``float32`` array in [0, 1] (or ``uint8``):

* 8-bit sources are scaled by 1/255;
* 16-bit and floating-point sources are windowed from their own minimum to maximum;
* DICOM goes through the modality LUT (``RescaleSlope`` / ``RescaleIntercept``), then the VOI LUT or the
  ``WindowCenter`` / ``WindowWidth`` window when the file has one, then min-max; ``MONOCHROME1`` images
  (bright = low attenuation) are inverted so bone is always bright.
* An alpha channel is dropped (no compositing), as ``PIL.Image.convert("RGB")`` does.

`XrayImageProcessor` follows the R2Gen convention every IU X-Ray / MIMIC-CXR paper uses: at training time
resize the shorter side to ``size`` (256), random-crop ``crop_size`` (224) and flip horizontally at random; at
evaluation time resize to ``crop_size x crop_size``. Grayscale films are repeated to three channels and
normalised with the ImageNet mean / std the visual extractors were trained with.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError
from transformers.image_processing_utils import BaseImageProcessor, BatchFeature

#: Films smaller than this on either side are refused (a 1x1 "film" is a broken export, not an X-ray).
MIN_IMAGE_SIDE = 16
#: Films longer than this many times their width (or wider than tall) are refused: the training resize of the
#: shorter side to 256 px would blow a 1x2000 strip up to 256x512000 pixels (1.5 GB).
MAX_ASPECT_RATIO = 8.0
#: Files above this many pixels are refused before decoding (PIL's decompression-bomb limit is 2x its default).
MAX_IMAGE_PIXELS = 2 * (Image.MAX_IMAGE_PIXELS or 89_478_485)

#: ImageNet channel means (RGB, 0-1 scale) that the image processors normalise with by default.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
#: ImageNet channel standard deviations (RGB, 0-1 scale), paired with ``IMAGENET_MEAN``.
IMAGENET_STD = (0.229, 0.224, 0.225)
_DICOM_MAGIC_OFFSET = 128

XrayImageSource = str | os.PathLike | Image.Image | np.ndarray


def _window(array: np.ndarray, where: str) -> np.ndarray:
    """Map an array linearly from its own [min, max] to [0, 1] (a constant image maps to zeros)."""
    array = array.astype(np.float32)
    if not np.isfinite(array).all():
        raise ValueError(f"{where}: the film has NaN or infinite pixel values")
    low, high = float(array.min()), float(array.max())
    if high <= low:
        return np.zeros_like(array)
    return (array - low) / (high - low)


def _is_dicom(path: str) -> bool:
    if path.lower().endswith((".dcm", ".dicom")):
        return True
    with open(path, "rb") as handle:
        handle.seek(_DICOM_MAGIC_OFFSET)
        return handle.read(4) == b"DICM"


def _read_dicom(path: str) -> np.ndarray:
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    try:
        dataset = pydicom.dcmread(path)
        pixels = dataset.pixel_array
    except (InvalidDicomError, AttributeError, ValueError, RuntimeError) as error:
        raise ValueError(f"{path}: not a readable DICOM image ({error})") from error
    if pixels.ndim != 2 and not (pixels.ndim == 3 and pixels.shape[-1] == 3):
        raise ValueError(f"{path}: expected one 2-D DICOM frame, got pixel array of shape {pixels.shape}")
    check_image_size(pixels.shape[1], pixels.shape[0], path)
    values = apply_modality_lut(pixels, dataset)
    if "WindowCenter" in dataset or "VOILUTSequence" in dataset:
        values = apply_voi_lut(values, dataset)
    image = _window(values, path)
    if dataset.get("PhotometricInterpretation", "MONOCHROME2") == "MONOCHROME1":
        image = 1.0 - image
    return image


def check_image_size(width: int, height: int, where: str) -> None:
    """Refuse a film too small, too elongated or too large to be a real X-ray; the message names ``where``."""
    if min(width, height) < MIN_IMAGE_SIDE:
        raise ValueError(
            f"{where}: image is {width}x{height} pixels; films need at least {MIN_IMAGE_SIDE} pixels on "
            "each side (is the file a thumbnail or a broken export?)"
        )
    if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        raise ValueError(
            f"{where}: image is {width}x{height} pixels, an aspect ratio above {MAX_ASPECT_RATIO:g}:1; "
            "crop or re-export the film"
        )
    if width * height > MAX_IMAGE_PIXELS:
        raise ValueError(
            f"{where}: image is {width}x{height} pixels ({width * height / 1e6:.0f} MP), more than the "
            f"{MAX_IMAGE_PIXELS / 1e6:.0f} MP this reader decodes; downscale the film first"
        )


def _read_pil_file(path: str) -> np.ndarray:
    """Check the size from the header (nothing decoded yet), then decode."""
    try:
        with Image.open(path) as opened:
            check_image_size(*opened.size, path)
            opened.load()
            return _from_pil(opened, path)
    except Image.DecompressionBombError as error:
        raise ValueError(f"{path}: cannot decode the image ({error}); downscale the film first") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise ValueError(f"{path}: cannot decode the image ({error})") from error


#: EXIF tag of the orientation a viewer applies (1: as stored).
EXIF_ORIENTATION = 0x0112


def _from_pil(image: Image.Image, where: str = "image") -> np.ndarray:
    if image.getexif().get(EXIF_ORIENTATION, 1) != 1:  # read the film as viewers show it (e.g. a phone's JPEG)
        image = ImageOps.exif_transpose(image)
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        return _window(np.asarray(image), where)
    if image.mode in ("1", "L", "LA"):
        image = image.convert("L")
    elif image.mode != "RGB":
        image = image.convert("RGB")
    return np.asarray(image, dtype=np.float32) / 255.0


def _from_array(array: np.ndarray) -> np.ndarray:
    if array.dtype.kind not in "uifb":
        raise ValueError(f"image: expected an array of real numbers, got dtype {array.dtype}")
    if array.ndim == 3 and array.shape[-1] == 4:
        array = array[..., :3]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (1, 3)):
        raise ValueError(f"image: expected an array (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got {array.shape}")
    check_image_size(array.shape[1], array.shape[0], "image")
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    return _window(array, "image")


def load_xray_image(source: XrayImageSource, output: str = "float32") -> np.ndarray:
    """Read one X-ray as an array ``(H, W)`` (grayscale) or ``(H, W, 3)`` (colour).

    Args:
        source: a file path (PNG, JPEG or DICOM; DICOM is recognised by its ``.dcm`` suffix or its ``DICM``
            preamble), a ``PIL.Image`` or a NumPy array.
        output: ``"float32"`` for values in [0, 1], ``"uint8"`` for 8-bit values in [0, 255].

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: the file is empty or cannot be decoded, the array has an unusable shape or dtype, the film
            has NaN or infinite values, or it is smaller than `MIN_IMAGE_SIDE`, more elongated than
            `MAX_ASPECT_RATIO` or larger than `MAX_IMAGE_PIXELS` (the message names the file and its size).
    """
    if output not in ("float32", "uint8"):
        raise ValueError(f"output: expected 'float32' or 'uint8', got {output!r}")
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: no such image file")
        if os.path.getsize(path) == 0:
            raise ValueError(f"{path}: the image file is empty")
        if _is_dicom(path):
            image = _read_dicom(path)
        else:
            image = _read_pil_file(path)
    elif isinstance(source, Image.Image):
        check_image_size(*source.size, "image")
        image = _from_pil(source)
    elif isinstance(source, np.ndarray):
        image = _from_array(source)
    else:
        raise ValueError(f"image: expected a path, PIL image or NumPy array, got {type(source).__name__}")
    if output == "uint8":
        return np.round(image * 255.0).astype(np.uint8)
    return image.astype(np.float32)


def flatten_studies(images: Any, return_tensors: str | None) -> tuple[list[XrayImageSource], int | None]:
    """The films of ``images`` (one film, a list of films, or a list of studies with the same number of views each)
    in order, and the views per study (``None`` when the films are not grouped into studies)."""
    if return_tensors not in (None, "pt"):
        raise ValueError(f"return_tensors: only 'pt' is supported, got {return_tensors!r}")
    if not isinstance(images, (list, tuple)):
        images = [images]
    if len(images) == 0:
        raise ValueError("images: got an empty list")
    nested = [isinstance(item, (list, tuple)) for item in images]
    if any(nested) and not all(nested):
        raise ValueError("images: mix of single images and lists of views; give one or the other")
    if not any(nested):
        return list(images), None
    view_counts = [len(views) for views in images]
    if len(set(view_counts)) != 1 or view_counts[0] == 0:
        raise ValueError(f"images: every study needs the same, non-zero number of views; got {view_counts}")
    return [view for views in images for view in views], view_counts[0]


def group_views(pixel_values: torch.Tensor, views: int | None) -> torch.Tensor:
    """``(films, 3, H, W)`` -> ``(studies, views, 3, H, W)`` when the films came grouped into studies."""
    return pixel_values if views is None else pixel_values.unflatten(0, (-1, views))


class XrayImageProcessor(BaseImageProcessor):
    r"""
    Image processor for chest X-ray report generation (R2Gen preprocessing).

    Args:
        size (`int`, defaults to 256): training-time resize of the shorter side, before the random crop.
        crop_size (`int`, defaults to 224): side of the square model input (random crop in training,
            plain resize at evaluation).
        do_train_augmentation (`bool`, defaults to `False`): training mode (resize `size`, random crop
            `crop_size`, random horizontal flip) instead of evaluation mode (resize to `crop_size` square).
            Can be overridden per call.
        flip_probability (`float`, defaults to 0.5): chance of the horizontal flip in training mode.
        do_normalize (`bool`, defaults to `True`): subtract `image_mean`, divide by `image_std`.
        image_mean / image_std (`tuple[float, float, float]`): per-channel statistics (ImageNet by default).
        seed (`int`, *optional*): seed of the augmentation's random generator (reproducible crops / flips).

    Calling it with ``images`` = one image, a list of images (one view each, gives ``pixel_values`` of shape
    (B, 3, H, W)) or a list of lists (several views per study, (B, V, 3, H, W); every study needs the same
    number of views) returns a `BatchFeature` with ``pixel_values``. Every image can be a path, a `PIL.Image`
    or a NumPy array (see `load_xray_image`).
    """

    model_input_names = ["pixel_values"]

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
        super().__init__(**kwargs)
        self._set_settings(
            size, crop_size, do_train_augmentation, flip_probability, do_normalize, image_mean, image_std, seed
        )

    def _set_settings(
        self,
        size: int,
        crop_size: int,
        do_train_augmentation: bool,
        flip_probability: float,
        do_normalize: bool,
        image_mean: Sequence[float],
        image_std: Sequence[float],
        seed: int | None,
    ) -> None:
        """Check and store the settings (shared with the fast processor, which has another base ``__init__``)."""
        if crop_size > size:
            raise ValueError(f"crop_size ({crop_size}) must not exceed size ({size})")
        if len(image_mean) != 3 or len(image_std) != 3:
            raise ValueError("image_mean and image_std: expected three values (R, G, B) each")
        self.size = int(size)
        self.crop_size = int(crop_size)
        self.do_train_augmentation = bool(do_train_augmentation)
        self.flip_probability = float(flip_probability)
        self.do_normalize = bool(do_normalize)
        self.image_mean = [float(v) for v in image_mean]
        self.image_std = [float(v) for v in image_std]
        self.seed = seed
        self._generator = torch.Generator().manual_seed(seed) if seed is not None else None

    def to_dict(self) -> dict[str, Any]:
        output = super().to_dict()
        output.pop("_generator", None)
        return output

    def _to_tensor(self, source: XrayImageSource) -> torch.Tensor:
        array = load_xray_image(source)
        tensor = torch.from_numpy(np.ascontiguousarray(array))
        if tensor.ndim == 2:
            return tensor.unsqueeze(0).expand(3, -1, -1)
        return tensor.permute(2, 0, 1)

    @staticmethod
    def _resize(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
        return F.interpolate(image[None], size=(height, width), mode="bilinear", align_corners=False, antialias=True)[
            0
        ]

    def _augment(self, image: torch.Tensor) -> torch.Tensor:
        height, width = image.shape[-2:]
        scale = self.size / min(height, width)
        image = self._resize(image, max(self.size, round(height * scale)), max(self.size, round(width * scale)))
        top = int(torch.randint(0, image.shape[-2] - self.crop_size + 1, (1,), generator=self._generator))
        left = int(torch.randint(0, image.shape[-1] - self.crop_size + 1, (1,), generator=self._generator))
        image = image[:, top : top + self.crop_size, left : left + self.crop_size]
        if float(torch.rand((), generator=self._generator)) < self.flip_probability:
            image = image.flip(-1)
        return image

    def process_one(self, source: XrayImageSource, train: bool | None = None) -> torch.Tensor:
        """One image as a normalised tensor (3, crop_size, crop_size)."""
        image = self._to_tensor(source)
        train = self.do_train_augmentation if train is None else train
        image = self._augment(image) if train else self._resize(image, self.crop_size, self.crop_size)
        if self.do_normalize:
            mean = torch.tensor(self.image_mean).view(3, 1, 1)
            std = torch.tensor(self.image_std).view(3, 1, 1)
            image = (image - mean) / std
        return image.contiguous()

    def preprocess(
        self,
        images: XrayImageSource | Sequence[XrayImageSource] | Sequence[Sequence[XrayImageSource]],
        do_train_augmentation: bool | None = None,
        return_tensors: str | None = "pt",
        **kwargs: Any,
    ) -> BatchFeature:
        films, views = flatten_studies(images, return_tensors)
        pixel_values = torch.stack([self.process_one(film, do_train_augmentation) for film in films])
        return BatchFeature({"pixel_values": group_views(pixel_values, views)})


__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MAX_ASPECT_RATIO",
    "MAX_IMAGE_PIXELS",
    "MIN_IMAGE_SIDE",
    "XrayImageProcessor",
    "check_image_size",
    "load_xray_image",
]
