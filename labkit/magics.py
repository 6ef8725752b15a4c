"""``%load_ext labkit.magics``: the %node magics live in :mod:`labkit.notebook.magics`."""
from .notebook.magics import USAGE, load_ipython_extension, node_cell, node_line, parse_line, run, use  # noqa: F401

__all__ = ["load_ipython_extension", "use", "run", "parse_line"]
