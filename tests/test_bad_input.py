"""Every loader path with what users really get wrong, through the search command.

Each case must give exit status 2, one line on stderr that names the file, line or
folder, no traceback, and no output folder left behind.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import search_run, write_image_folder

ROW = " ".join(["128"] * 2304)


def _csv(tmp: Path, text: str) -> Path:
    path = tmp / "faces.csv"
    path.write_text(text)
    return path


def _folder(tmp: Path, case: str) -> Path:
    root = tmp / "faces"
    root.mkdir()
    if case == "one_class":
        write_image_folder(root, {"happy": 4})
    elif case == "corrupt_png":
        write_image_folder(root, {"happy": 3, "sad": 3})
        (root / "sad" / "S100_001_00000009.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    elif case == "empty_class":
        write_image_folder(root, {"happy": 3})
        (root / "sad").mkdir()
    elif case == "only_non_images":
        write_image_folder(root, {"happy": 3})
        (root / "sad").mkdir()
        (root / "sad" / "readme.txt").write_text("faces go here")
    return root


CASES = {
    # CSV files
    "csv without header": (lambda t: _csv(t, f"0,{ROW}\n1,{ROW}\n"), "looks like data"),
    "csv with semicolons": (lambda t: _csv(t, f"emotion;pixels\n0;{ROW}\n"), "another delimiter"),
    "ragged row": (lambda t: _csv(t, f"emotion,pixels\n0,{ROW}\n1,{ROW},Training\n"), "line 3: 3 fields"),
    "ragged pixels": (lambda t: _csv(t, f"emotion,pixels\n0,{ROW}\n1,{ROW} 5\n"), "line 3: 2305 pixels"),
    "non-numeric pixels": (lambda t: _csv(t, f"emotion,pixels\n0,{ROW}\n1,{ROW[:-3]}1e9x\n"), "line 3: pixel 2304"),
    "NaN label": (lambda t: _csv(t, f"emotion,pixels\nnan,{ROW}\n1,{ROW}\n"), "line 2: emotion 'nan'"),
    "negative label": (lambda t: _csv(t, f"emotion,pixels\n0,{ROW}\n-3,{ROW}\n"), "line 3: emotion '-3'"),
    "empty file": (lambda t: _csv(t, ""), "file is empty"),
    "header only": (lambda t: _csv(t, "emotion,pixels,Usage\n"), "no rows follow"),
    "huge row": (lambda t: _csv(t, f"emotion,pixels\n0,{ROW}\n1,{' '.join(['9'] * 10**6)}\n"),
                 "line 3: 1000000 pixels"),
    # image folders
    "empty folder": (lambda t: _folder(t, "empty"), "no class folders"),
    "one class": (lambda t: _folder(t, "one_class"), "only one class"),
    "corrupt png": (lambda t: _folder(t, "corrupt_png"), "S100_001_00000009.png: cannot decode image"),
    "empty class folder": (lambda t: _folder(t, "empty_class"), "holds no images"),
    "class folder of non-images": (lambda t: _folder(t, "only_non_images"), "holds no images"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_data_exits_2_with_one_line_and_leaves_nothing(tmp_path: Path, case: str) -> None:
    make, expected = CASES[case]
    source = make(tmp_path)
    output = tmp_path / "runs"
    result = search_run("--data", str(source), "--output", str(output), timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr[-2000:]
    assert expected in lines[0] and str(source) in lines[0]
    assert "Traceback" not in result.stderr and not output.exists()


def test_stray_files_are_skipped_with_a_warning_not_an_error(tmp_path: Path) -> None:
    from fer_core.data import load

    root = write_image_folder(tmp_path / "faces", {"happy": 3, "sad": 3})
    (root / "happy" / "Thumbs.db").write_bytes(b"\0\1")
    (root / "sad" / "notes.md").write_text("# notes")
    assert len(load(root)) == 6
    assert np.isfinite(load(root).images).all()
