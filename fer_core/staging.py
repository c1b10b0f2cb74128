"""Files and folders written beside their target and then moved into place whole: a reader
sees the old one or the new one, and a kill while writing leaves the old one.

A staging folder from :func:`tempfile.mkdtemp` is private (mode 0700), and renaming it into place
keeps that mode: a run's ``best/`` or ``predict --output`` folder would be unreadable to the
user's group. :func:`staging_folder` gives it the mode a plain ``mkdir`` would.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def staging_folder(target: Path, tag: str = "") -> Path:
    """A new, empty folder beside ``target`` (hidden, named after it), with the umask's folder mode."""
    folder = Path(tempfile.mkdtemp(prefix=f".{target.name}-{tag}", dir=target.parent))
    folder.chmod(0o777 & ~current_umask())
    return folder


def current_umask() -> int:
    """The process's umask (reading it means setting it, so it is set straight back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write ``path`` through a temporary sibling and a rename."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    os.replace(tmp, path)
