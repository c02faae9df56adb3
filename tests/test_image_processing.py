"""X-ray loading (PNG 8/16-bit, grayscale/RGB/RGBA, JPEG, DICOM) and the shared XrayImageProcessor."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_dicom as _write_dicom
from PIL import Image

import modeling_rrg_mamba.image_processing_xray as xray_module
from modeling_rrg_mamba.image_processing_xray import IMAGENET_MEAN, IMAGENET_STD, XrayImageProcessor, load_xray_image

COVID = Path(__file__).resolve().parents[2] / "shared" / "data" / "covid-cxr-sample"


def _ramp(height=32, width=48, high=255):
    return np.tile(np.linspace(0, high, width), (height, 1))


def test_png_modes_load_to_unit_range(tmp_path):
    gray = _ramp().astype(np.uint8)
    Image.fromarray(gray, "L").save(tmp_path / "gray.png")
    rgb = np.stack([gray, gray // 2, 255 - gray], -1)
    Image.fromarray(rgb, "RGB").save(tmp_path / "rgb.png")
    Image.fromarray(np.concatenate([rgb, np.full_like(gray, 7)[..., None]], -1), "RGBA").save(tmp_path / "rgba.png")

    loaded_gray = load_xray_image(tmp_path / "gray.png")
    assert loaded_gray.shape == (32, 48) and loaded_gray.dtype == np.float32
    np.testing.assert_allclose(loaded_gray, gray / 255.0, atol=1e-6)
    np.testing.assert_allclose(load_xray_image(tmp_path / "rgb.png"), rgb / 255.0, atol=1e-6)
    # The alpha channel is dropped, colour kept.
    np.testing.assert_allclose(load_xray_image(tmp_path / "rgba.png"), rgb / 255.0, atol=1e-6)
    np.testing.assert_array_equal(load_xray_image(tmp_path / "gray.png", output="uint8"), gray)


def test_sixteen_bit_png_is_windowed_from_its_own_range(tmp_path):
    pixels = (1000 + _ramp(high=3000)).astype(np.uint16)  # 12-bit data stored in 16 bits
    Image.fromarray(pixels).save(tmp_path / "deep.png")
    with Image.open(tmp_path / "deep.png") as check:
        assert check.mode.startswith("I")
    loaded = load_xray_image(tmp_path / "deep.png")
    np.testing.assert_allclose(loaded, (pixels - 1000.0) / 3000.0, atol=1e-6)


def test_jpeg_loads_close_to_source(tmp_path):
    gray = _ramp().astype(np.uint8)
    Image.fromarray(gray, "L").save(tmp_path / "film.jpg", quality=95)
    assert np.abs(load_xray_image(tmp_path / "film.jpg") - gray / 255.0).max() < 0.05


def test_dicom_rescale_and_window_are_applied(tmp_path, monkeypatch):
    monkeypatch.setattr(xray_module, "MIN_IMAGE_SIDE", 1)  # a few pixels are enough to check the LUTs
    monkeypatch.setattr(xray_module, "MAX_ASPECT_RATIO", 100.0)
    # Stored values 0..1000, slope 2, intercept -1000 -> modality values -1000..1000; window [-500, 500].
    stored = np.tile(np.array([0, 250, 500, 750, 1000]), (4, 1))
    path = _write_dicom(tmp_path / "ct_like.dcm", stored, slope=2.0, intercept=-1000.0, window=(0, 1000))
    row = load_xray_image(path)[0]
    assert row[0] == pytest.approx(0.0) and row[1] == pytest.approx(0.0, abs=1e-3)
    assert row[2] == pytest.approx(0.5, abs=1e-2)  # modality value 0 sits in the middle of the window
    assert row[3] == pytest.approx(1.0, abs=1e-3) and row[4] == pytest.approx(1.0)


def test_dicom_monochrome1_is_inverted_and_found_without_suffix(tmp_path, monkeypatch):
    monkeypatch.setattr(xray_module, "MIN_IMAGE_SIDE", 1)  # a few pixels are enough to check the LUTs
    monkeypatch.setattr(xray_module, "MAX_ASPECT_RATIO", 100.0)
    stored = np.tile(np.arange(0, 4000, 100), (3, 1))
    normal = load_xray_image(_write_dicom(tmp_path / "m2.dcm", stored, "MONOCHROME2"))
    inverted = load_xray_image(_write_dicom(tmp_path / "m1_no_suffix", stored, "MONOCHROME1"))  # DICM preamble
    np.testing.assert_allclose(normal, stored / 3900.0, atol=1e-6)
    np.testing.assert_allclose(inverted, 1.0 - normal, atol=1e-6)


def test_unreadable_inputs_raise_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.png"):
        load_xray_image(tmp_path / "missing.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ValueError, match="empty.png.*empty"):
        load_xray_image(tmp_path / "empty.png")
    (tmp_path / "garbage.png").write_bytes(b"not an image at all")
    with pytest.raises(ValueError, match="garbage.png"):
        load_xray_image(tmp_path / "garbage.png")
    (tmp_path / "broken.dcm").write_bytes(b"\0" * 200)
    with pytest.raises(ValueError, match="broken.dcm"):
        load_xray_image(tmp_path / "broken.dcm")
    with pytest.raises(ValueError, match="image"):
        load_xray_image(np.zeros((4, 4, 5)))


def test_eval_mode_resizes_and_normalises():
    processor = XrayImageProcessor(size=64, crop_size=48)
    pixels = processor(np.full((100, 80), 255, np.uint8)).pixel_values
    assert pixels.shape == (1, 3, 48, 48)
    expected = (1.0 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    torch.testing.assert_close(pixels[0, :, 10, 10], expected)


def test_train_mode_crops_and_flips_reproducibly():
    image = np.zeros((64, 96), np.uint8)
    image[:, :8] = 255  # a bright left border: a flip moves it to the right
    kwargs = dict(size=64, crop_size=56, do_train_augmentation=True, do_normalize=False, seed=0)
    first = XrayImageProcessor(**kwargs)([image] * 16).pixel_values
    again = XrayImageProcessor(**kwargs)([image] * 16).pixel_values
    assert first.shape == (16, 3, 56, 56)
    torch.testing.assert_close(first, again)
    left, right = first[..., :4].mean(dim=(1, 2, 3)), first[..., -4:].mean(dim=(1, 2, 3))
    flipped = right > left
    assert 0 < int(flipped.sum()) < 16  # some flipped, some not
    evaluated = XrayImageProcessor(**kwargs)([image] * 2, do_train_augmentation=False).pixel_values
    torch.testing.assert_close(evaluated[0], evaluated[1])


def test_views_per_study_and_mismatch():
    processor = XrayImageProcessor(size=40, crop_size=32)
    image = np.zeros((40, 40), np.uint8)
    assert processor([[image, image], [image, image], [image, image]]).pixel_values.shape == (3, 2, 3, 32, 32)
    with pytest.raises(ValueError, match="same, non-zero number of views"):
        processor([[image, image], [image]])
    with pytest.raises(ValueError, match="mix of single images"):
        processor([image, [image]])


def test_save_and_load_keep_settings(tmp_path):
    processor = XrayImageProcessor(size=300, crop_size=256, do_train_augmentation=True, image_mean=(0.5, 0.5, 0.5))
    processor.save_pretrained(tmp_path)
    loaded = XrayImageProcessor.from_pretrained(tmp_path)
    assert (loaded.size, loaded.crop_size, loaded.do_train_augmentation, loaded.image_mean) == (
        300,
        256,
        True,
        [0.5] * 3,
    )


@pytest.mark.skipif(not COVID.is_dir(), reason="shared covid-cxr-sample data not present")
def test_real_chest_films_process():
    entries = json.loads((COVID / "annotation.json").read_text())["train"][:3]
    paths = [COVID / "images" / entry["image_path"][0] for entry in entries]
    pixels = XrayImageProcessor()(paths).pixel_values
    assert pixels.shape == (3, 3, 224, 224) and torch.isfinite(pixels).all()
    assert pixels.std() > 0.1


@pytest.mark.parametrize(
    "image, message",
    [
        (np.zeros((1, 1), np.uint8), "1x1 pixels"),
        (np.zeros((0, 0), np.float32), "0x0 pixels"),
        (np.zeros((16, 2000), np.uint8), "aspect ratio"),
        (Image.new("L", (2, 2)), "2x2 pixels"),
        (np.full((64, 64), np.nan, np.float32), "NaN or infinite"),
        (np.full((64, 64), np.inf), "NaN or infinite"),
        (Image.fromarray(np.full((64, 64), np.nan, np.float32)), "NaN or infinite"),
        (np.ones((64, 64), complex), "real numbers, got dtype complex128"),
        (np.array([[None] * 20] * 20), "real numbers, got dtype object"),
    ],
    ids=["1x1", "empty", "strip", "tiny-pil", "nan", "inf", "nan-pil", "complex", "object"],
)
def test_in_memory_films_get_the_checks_files_get(image, message):
    with pytest.raises(ValueError, match=message):
        load_xray_image(image)


def test_a_float_file_with_nan_names_the_file(tmp_path):
    path = tmp_path / "float.tif"
    Image.fromarray(np.full((64, 64), np.nan, np.float32)).save(path)
    with pytest.raises(ValueError, match=r"float\.tif: the film has NaN"):
        load_xray_image(path)
