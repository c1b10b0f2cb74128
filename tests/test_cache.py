"""The decoded-image cache: unchanged files served from it, changed ones decoded again, damage survived."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest

from conftest import write_fer_tree, write_image_folder
from fer_core.cache import cache_dir as cache_folder
from fer_core.data import load


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch) -> Path:
    """A private, empty cache folder, used for every image set however small."""
    monkeypatch.setenv("FER_TUNE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("fer_core.cache.CACHE_MIN_FILES", 0)
    return tmp_path / "cache"


def _bmp_folder(root: Path, seed: int = 0) -> Path:
    """Class folders of BMPs: a BMP's size does not depend on its pixels, so edits keep it."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (48, 48), dtype=np.uint8)).save(root / name / f"{i}.bmp")
    return root


def _repaint(file: Path, value: int, keep_time: bool) -> None:
    from PIL import Image

    stat = file.stat()
    size = stat.st_size
    Image.fromarray(np.full((48, 48), value, np.uint8)).save(file)
    assert file.stat().st_size == size
    if keep_time:
        os.utime(file, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    else:
        os.utime(file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))


def test_cache_serves_unchanged_files_and_rebuilds_changed_ones(tmp_path: Path, cache_dir: Path) -> None:
    root = _bmp_folder(tmp_path / "faces")
    first = load(root)
    assert len(list(cache_dir.glob("*.npz"))) == 1
    # Same paths, sizes and times: the cache answers, so the repainted pixels are not seen.
    _repaint(root / "a" / "0.bmp", 7, keep_time=True)
    np.testing.assert_array_equal(load(root).images, first.images)
    # A newer time makes the entry stale: the images are decoded again, and the entry replaced.
    _repaint(root / "a" / "0.bmp", 7, keep_time=False)
    again = load(root)
    assert np.allclose(again.images[0], 7 / 255) and not np.allclose(first.images[0], 7 / 255)
    assert len(list(cache_dir.glob("*.npz"))) == 1
    # An added file misses the cache too.
    (root / "b" / "3.bmp").write_bytes((root / "b" / "0.bmp").read_bytes())
    assert load(root).class_counts().tolist() == [3, 4]


def test_corrupt_cache_entry_is_ignored_and_rebuilt(tmp_path: Path, cache_dir: Path, caplog) -> None:
    root = _bmp_folder(tmp_path / "faces")
    first = load(root)
    (entry,) = cache_dir.glob("*.npz")
    entry.write_bytes(entry.read_bytes()[:1000])  # a half-written or damaged file
    with caplog.at_level(logging.WARNING):
        again = load(root)
    assert "ignoring unreadable cache entry" in caplog.text
    np.testing.assert_array_equal(again.images, first.images)
    assert again.usage is None and again.groups is None and again.faces == first.faces
    with np.load(entry) as saved:  # rewritten whole
        assert saved["images"].shape == (6, 48, 48)


def test_cache_entries_are_per_faces_option_and_can_be_turned_off(tmp_path: Path, cache_dir: Path,
                                                                   monkeypatch) -> None:
    root = _bmp_folder(tmp_path / "faces")
    load(root, faces="none")
    load(root, faces="auto")
    assert len(list(cache_dir.glob("*.npz"))) == 2
    load(root, faces="none", cache=False)
    monkeypatch.setenv("FER_TUNE_CACHE", "off")
    other = _bmp_folder(tmp_path / "other", seed=1)
    load(other)
    assert len(list(cache_dir.glob("*.npz"))) == 2


def test_cached_ck_layout_keeps_subjects_and_usage(tmp_path: Path, cache_dir: Path) -> None:
    root = write_image_folder(tmp_path / "ck", {"happy": 5, "sad": 5}, subjects=3)
    first, cached = load(root), load(root)
    assert list(cache_dir.glob("*.npz"))
    np.testing.assert_array_equal(cached.groups, first.groups)
    np.testing.assert_array_equal(cached.labels, first.labels)
    assert cached.class_names == first.class_names and cached.source == first.source
    tree = write_fer_tree(tmp_path / "fer", {"Training": {"a": 4, "b": 4}, "PublicTest": {"a": 2, "b": 2},
                                              "PrivateTest": {"a": 2, "b": 2}})
    np.testing.assert_array_equal(load(tree).usage, load(tree).usage)
    assert set(load(tree).usage) == {"Training", "PublicTest", "PrivateTest"}


def test_the_cache_folder_follows_the_environment(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("FER_TUNE_CACHE", str(tmp_path / "mine"))
    assert cache_folder() == tmp_path / "mine"
    for off in ("off", "0", "no", "None"):
        monkeypatch.setenv("FER_TUNE_CACHE", off)
        assert cache_folder() is None
    monkeypatch.delenv("FER_TUNE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_folder() == tmp_path / "xdg" / "fer_tune"
