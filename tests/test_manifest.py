"""Manifests of the user's own photos: subjects and usage kept, bad rows named by line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fer_core.data import load
from fer_core.errors import DataError, run_cli
from fer_core.splits import make_splits


def _image(path: Path, rng: np.random.Generator, size: int = 48) -> np.ndarray:
    from PIL import Image

    pixels = rng.integers(0, 256, (size, size), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return pixels


def _manifest(tmp_path: Path, lines: list[str], header: str = "path,label,subject") -> Path:
    path = tmp_path / "photos.csv"
    path.write_text("\n".join([header, *lines]) + "\n")
    return path


def test_manifest_with_subjects_keeps_each_subject_on_one_side(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    lines, pixels = [], []
    for subject in range(15):
        for label in ("sad", "happy", "surprise"):
            for take in range(2):
                relative = f"people/p{subject}/{label}{take}.png"
                pixels.append(_image(tmp_path / relative, rng))
                lines.append(f"{relative},{label},person{subject}")
    data = load(_manifest(tmp_path, lines))
    assert data.class_names == ("happy", "sad", "surprise") and len(data) == 90
    assert len(np.unique(data.groups)) == 15 and data.usage is None
    np.testing.assert_allclose(data.images[7, ..., 0], pixels[7] / 255.0, atol=1e-6)
    assert data.class_names[data.labels[7]] == lines[7].split(",")[1]
    splits = make_splits(data, "auto")
    assert splits.method == "subject"
    sides = [set(part.groups) for part in (splits.train, splits.val, splits.test)]
    assert not (sides[0] & sides[1] or sides[0] & sides[2] or sides[1] & sides[2])
    assert sum(len(part) for part in (splits.train, splits.val, splits.test)) == 90


def test_manifest_usage_column_drives_a_usage_split(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    lines = []
    for i in range(24):
        _image(tmp_path / f"img{i}.png", rng, size=64)
        usage = ("Training", "publictest", "PrivateTest")[i % 3]  # any case: PublicTest is meant
        lines.append(f"img{i}.png,{('calm', 'angry')[i % 2]},{usage}")
    data = load(_manifest(tmp_path, lines, header="Path,Label,Usage"))
    assert data.groups is None and data.images.shape == (24, 48, 48, 1)
    splits = make_splits(data, "auto")
    assert splits.method == "usage" and set(splits.val.usage) == {"PublicTest"} and len(splits.test) == 8


@pytest.mark.parametrize("case, line, expected", [
    ("missing file", "people/nobody.png,happy,p1", "line 3: image 'people/nobody.png' not found"),
    ("unknown usage", "a.png,happy,p1,Validation", "line 3: usage 'Validation'; expected one of Training, PublicTest, PrivateTest"),
    ("empty label", "a.png,,p1", "line 3: label is empty; expected a class name"),
    ("unreadable image", "broken.png,sad,p1", "line 3: image"),
    ("empty subject", "a.png,sad,", "line 3: subject is empty"),
    ("empty path", ",sad,p1", "line 3: path is empty"),
    ("ragged row", "a.png,sad", "line 3: 2 fields where the header has 3"),
    ("unknown column", None, "line 1: unknown column 'subjet'; expected a header 'path,label[,subject][,usage]'"),
])
def test_bad_manifest_rows_are_one_line_errors_naming_csv_and_line(tmp_path: Path, capsys, case: str,
                                                                   line: str | None, expected: str) -> None:
    rng = np.random.default_rng(5)
    _image(tmp_path / "a.png", rng)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    header = "path,label,subject,usage" if case == "unknown usage" else "path,label,subject"
    first = "a.png,happy,p0,Training" if case == "unknown usage" else "a.png,happy,p0"
    if case == "unknown column":
        header = "path,label,subjet"
    path = _manifest(tmp_path, [first] + ([line] if line else ["a.png,sad,p1"]), header=header)
    with pytest.raises(DataError) as info:
        load(path)
    message = str(info.value)
    assert expected in message and message.startswith(str(path)) and "\n" not in message
    if case == "unreadable image":
        assert "cannot decode image" in message
    assert run_cli(lambda argv: load(path), prog="fer-tune") == 2  # what a command line prints
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err
