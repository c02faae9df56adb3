"""XrayImageProcessorFast: the slow processor's outputs (evaluation and seeded training augmentation), its
save/load round trip, and AutoImageProcessor picking it without the "torchvision backend not available" warning."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoImageProcessor, PretrainedConfig

from modeling_rrg_mamba._compat import FastImageProcessorBase, register_image_processors
from modeling_rrg_mamba.image_processing_xray import XrayImageProcessor
from modeling_rrg_mamba.image_processing_xray_fast import XrayImageProcessorFast


@pytest.fixture(scope="module")
def films(tmp_path_factory) -> list:
    """Grayscale PNG and JPEG files of different sizes, a 16-bit PNG, an RGB array and a PIL image."""
    folder = tmp_path_factory.mktemp("films")
    rng = np.random.default_rng(0)
    paths = []
    for index, (height, width) in enumerate([(90, 70), (64, 64), (90, 70), (50, 120)]):
        path = folder / f"film{index}.{'png' if index % 2 else 'jpg'}"
        Image.fromarray(rng.integers(0, 256, (height, width), dtype=np.uint8)).save(path)
        paths.append(str(path))
    deep = folder / "deep.png"
    Image.fromarray(rng.integers(0, 65535, (80, 60), dtype=np.uint16)).save(deep)
    return [
        *paths,
        str(deep),
        rng.integers(0, 256, (40, 44, 3), dtype=np.uint8),
        Image.fromarray(rng.integers(0, 256, (66, 48), dtype=np.uint8)),
    ]


@pytest.mark.parametrize("settings", [{}, {"size": 72, "crop_size": 64}, {"do_normalize": False}])
def test_evaluation_outputs_match_the_slow_processor(films, settings):
    slow, fast = XrayImageProcessor(**settings), XrayImageProcessorFast(**settings)
    expected, got = slow(films)["pixel_values"], fast(films)["pixel_values"]
    assert got.shape == expected.shape and got.dtype == expected.dtype
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_studies_of_several_views_match(films):
    studies = [films[0:2], films[2:4], films[4:6]]
    expected = XrayImageProcessor(size=72, crop_size=64)(studies)["pixel_values"]
    got = XrayImageProcessorFast(size=72, crop_size=64)(studies)["pixel_values"]
    assert got.shape == (3, 2, 3, 64, 64)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_seeded_training_augmentation_matches_the_slow_processor(films):
    slow = XrayImageProcessor(size=72, crop_size=64, seed=7, do_train_augmentation=True)
    fast = XrayImageProcessorFast(size=72, crop_size=64, seed=7, do_train_augmentation=True)
    for _ in range(3):  # the random streams stay in step call after call
        torch.testing.assert_close(fast(films)["pixel_values"], slow(films)["pixel_values"], atol=1e-5, rtol=0)
    evaluation = XrayImageProcessorFast(size=72, crop_size=64)(films, do_train_augmentation=False)["pixel_values"]
    assert not torch.allclose(fast(films)["pixel_values"], evaluation)


def test_errors_are_the_slow_processors(films):
    fast = XrayImageProcessorFast()
    with pytest.raises(ValueError, match="mix of single images"):
        fast([films[0], [films[1]]])
    with pytest.raises(ValueError, match="same, non-zero number of views"):
        fast([[films[0]], [films[1], films[2]]])
    with pytest.raises(ValueError, match="crop_size"):
        XrayImageProcessorFast(size=100, crop_size=200)


def test_is_the_fast_backend_and_round_trips(tmp_path, films):
    fast = XrayImageProcessorFast(size=72, crop_size=64, seed=3)
    assert isinstance(fast, FastImageProcessorBase)
    assert getattr(fast, "backend", "torchvision") == "torchvision" and getattr(fast, "is_fast", True)
    fast.save_pretrained(tmp_path)
    loaded = XrayImageProcessorFast.from_pretrained(tmp_path)
    assert (loaded.size, loaded.crop_size, loaded.seed) == (72, 64, 3)
    torch.testing.assert_close(loaded(films)["pixel_values"], fast(films)["pixel_values"])


class _TinyXrayConfig(PretrainedConfig):
    model_type = "tiny_xray_fast_test"


class _TinyXrayImageProcessor(XrayImageProcessor):
    """A model's own slow class, as RRGMambaImageProcessor is (registered with the slow class only, every
    AutoImageProcessor load warns "Requested torchvision backend is not available" on transformers 5)."""


class _TinyXrayImageProcessorFast(XrayImageProcessorFast):
    slow_image_processor_class = _TinyXrayImageProcessor


IS_TRANSFORMERS_5 = hasattr(FastImageProcessorBase, "backend")


def test_auto_image_processor_loads_the_fast_one_without_warning(tmp_path, caplog):
    register_image_processors(_TinyXrayConfig, _TinyXrayImageProcessor, _TinyXrayImageProcessorFast)
    _TinyXrayConfig().save_pretrained(tmp_path)
    _TinyXrayImageProcessor(size=72, crop_size=64).save_pretrained(tmp_path)  # saved by the slow one, as today
    with caplog.at_level(logging.WARNING):
        loaded = AutoImageProcessor.from_pretrained(tmp_path)
    assert "backend is not available" not in caplog.text and "Falling back" not in caplog.text
    if IS_TRANSFORMERS_5:  # the torchvision backend is the default
        assert type(loaded) is _TinyXrayImageProcessorFast and loaded.crop_size == 64
        slow = AutoImageProcessor.from_pretrained(tmp_path, backend="pil")
        assert type(slow) is _TinyXrayImageProcessor
    else:  # 4.57 keeps the class the folder was saved with (it finds fast classes by name among its own only)
        assert type(loaded) is _TinyXrayImageProcessor and loaded.crop_size == 64
