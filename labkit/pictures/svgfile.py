"""Writing a picture to a file the user named (labkit/outfile.py: checked first, written
atomically); the name must end in .svg."""
from __future__ import annotations

from ..outfile import check_output_path, write_whole


def check_svg_path(path: object) -> str:
    """The absolute path of an SVG file name the user gave, or LabError."""
    return check_output_path(path, "picture", "topology.svg", ".svg")


def write_svg(path: str, svg: str) -> str:
    """Write `svg` to `path` (checked as check_svg_path does) atomically; returns the path."""
    return write_whole(path, svg, "picture", "topology.svg", ".svg")
