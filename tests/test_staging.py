"""Staging folders: beside their target, named after it, with the mode a plain mkdir gives."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fer_core.staging import current_umask, staging_folder


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_a_staging_folder_has_the_umasks_mode_not_mkdtemps(mask: int, tmp_path: Path) -> None:
    before = os.umask(mask)
    try:
        folder = staging_folder(tmp_path / "best", "old-")
        plain = tmp_path / "plain"
        plain.mkdir()
        assert current_umask() == mask  # reading the umask leaves it as it was
    finally:
        os.umask(before)
    assert folder.parent == tmp_path and folder.name.startswith(".best-old-") and not any(folder.iterdir())
    assert folder.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777 == 0o777 & ~mask
