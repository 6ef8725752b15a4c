"""Writing a picture to a file the user named: checked first, written atomically.

A bad name is one line and nothing on the host changes; a good one is written to a
temporary file beside it and renamed over it, so a reader never sees half a picture and an
old picture is replaced whole or not at all.
"""
from __future__ import annotations

import os
import tempfile

from ..errors import LabError


def check_svg_path(path: object) -> str:
    """The absolute path of an SVG file name the user gave, or LabError: it must end in
    .svg, its folder must exist (labkit creates none) and it must be, or become, a regular
    file."""
    if not isinstance(path, str) or not path or "\0" in path or "\n" in path:
        raise LabError(f"invalid SVG file name {path!r}")
    full = os.path.abspath(path)
    if path.endswith("/") or os.path.isdir(full):
        raise LabError(f"cannot write the picture {path}: it is a directory; give a file name, "
                       f"e.g. {os.path.join(path, 'topology.svg')}")
    if not full.lower().endswith(".svg"):
        raise LabError(f"cannot write the picture {path}: the file name must end in .svg")
    parent = os.path.dirname(full)
    if not os.path.isdir(parent):
        what = "is not a directory" if os.path.exists(parent) else "does not exist (labkit does not create it)"
        raise LabError(f"cannot write the picture {path}: {parent} {what}")
    if os.path.lexists(full) and not os.path.isfile(full):
        raise LabError(f"cannot write the picture {path}: it exists and is not a regular file")
    if not os.access(parent, os.W_OK):
        raise LabError(f"cannot write the picture {path}: {parent} is not writable")
    return full


def write_svg(path: str, svg: str) -> str:
    """Write `svg` to `path` (checked with check_svg_path) atomically; returns the path."""
    full = check_svg_path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(full)}.", suffix=".tmp",
                                   dir=os.path.dirname(full))
    except OSError as e:
        raise LabError(f"cannot write the picture {path}: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(svg)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, full)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(e, OSError):
            raise LabError(f"cannot write the picture {path}: {e.strerror or e}") from None
        raise
    return full
