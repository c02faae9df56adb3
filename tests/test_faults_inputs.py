"""Inputs are read as the user sees them (issue 26, part 3)."""

import numpy as np
import pytest


@pytest.mark.parametrize("orientation, turn", [(6, -1), (8, 1), (3, 2)])
def test_a_jpeg_with_an_exif_orientation_is_read_as_viewers_show_it(tmp_path, orientation, turn):
    from PIL import Image

    from modeling_rrg_mamba.image_processing_xray import EXIF_ORIENTATION, load_xray_image

    stored = np.zeros((32, 48), dtype=np.uint8)
    stored[:8, :8] = 255  # a bright corner, top left as stored
    exif = Image.Image().getexif()
    exif[EXIF_ORIENTATION] = orientation
    path = tmp_path / "film.jpg"
    Image.fromarray(stored).save(path, quality=100, exif=exif)
    shown = load_xray_image(path, output="uint8")
    expected = np.rot90(stored, turn)  # 6: turn 90 degrees clockwise, 8: anticlockwise, 3: half a turn
    assert shown.shape == expected.shape
    assert np.abs(shown.astype(int) - expected).mean() < 4
