"""Decoding image files as loading and prediction do."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fer_core.errors import DataError
from fer_core.images import read_gray


def test_read_gray_turns_phone_photos_upright(tmp_path: Path) -> None:
    from PIL import Image

    pixels = np.zeros((30, 40, 3), np.uint8)
    pixels[:, :5] = 255  # a white stripe on the left as stored
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6  # EXIF orientation 6: the camera was turned; show the picture rotated 90 degrees
    image.save(tmp_path / "phone.jpg", exif=exif, quality=95)
    gray = read_gray(tmp_path / "phone.jpg")
    assert gray.shape == (40, 30) and gray.dtype == np.uint8
    assert gray[:5].mean() > 200 and gray[-5:].mean() < 50  # the stripe is now on top
    with pytest.raises(DataError, match="phone.png: cannot decode image"):
        (tmp_path / "phone.png").write_bytes(b"not an image")
        read_gray(tmp_path / "phone.png")
