"""Files a user names for labkit to write: a picture, a pcap file, a bundle.

Each name is checked before any work starts, so a bad one costs one line and changes
nothing on the host (labkit creates no folder). Text files are written to a temporary file
beside the target and renamed over it: a reader never sees half a file, and an old file is
replaced whole or not at all.
"""
from __future__ import annotations

import os
import tempfile

from .errors import LabError


def check_output_path(path: object, what: str, example: str, suffix: str | None = None) -> str:
    """The absolute path of a file name the user gave for `what` ("picture", "pcap file",
    "bundle"), or LabError: its folder must exist and be writable, and the file must be, or
    become, a regular file (ending in `suffix` when one is given). `example` is the file
    name suggested when a folder is given instead."""
    if not isinstance(path, str) or not path or "\0" in path or "\n" in path:
        raise LabError(f"invalid file name {path!r} for the {what}")
    full = os.path.abspath(path)

    def refuse(why: str) -> LabError:
        return LabError(f"cannot write the {what} {path}: {why}")
    if path.endswith("/") or os.path.isdir(full):
        raise refuse(f"it is a directory; give a file name, e.g. {os.path.join(path, example)}")
    if suffix and not full.lower().endswith(suffix):
        raise refuse(f"the file name must end in {suffix}")
    parent = os.path.dirname(full)
    if not os.path.exists(parent):
        up = parent  # walk up to say which part is missing or is not a folder
        while not os.path.exists(up):
            up = os.path.dirname(up)
        if not os.path.isdir(up):
            raise refuse(f"{up} is a file, not a directory")
        raise refuse(f"directory {parent} does not exist (labkit does not create it)")
    if not os.path.isdir(parent):
        raise refuse(f"{parent} is a file, not a directory")
    if os.path.lexists(full) and not os.path.isfile(full):
        raise refuse("it exists and is not a regular file")
    if not os.access(parent, os.W_OK):
        raise refuse(f"directory {parent} is not writable")
    return full


def write_whole(path: str, text: str, what: str, example: str, suffix: str | None = None) -> str:
    """Write `text` to `path` (checked as above) atomically, mode 0644; returns the path."""
    full = check_output_path(path, what, example, suffix)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(full)}.", suffix=".tmp", dir=os.path.dirname(full))
    except OSError as e:
        raise LabError(f"cannot write the {what} {path}: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
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
            raise LabError(f"cannot write the {what} {path}: {e.strerror or e}") from None
        raise
    return full
