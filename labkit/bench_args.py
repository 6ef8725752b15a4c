"""Argument types of the benchmarks (`labkit bench`, bench/*.py): bad values are refused
by argparse, with the range, before any lab is built."""
from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from .spec import MAX_NODES


def sizes(text: str) -> list[int]:
    """--sizes: node counts, comma-separated, each one a lab `up` accepts."""
    try:
        counts = [int(x) for x in text.split(",")]
    except ValueError:
        counts = []
    if not counts or any(not 1 <= n <= MAX_NODES for n in counts):
        raise argparse.ArgumentTypeError(f"give node counts from 1 to {MAX_NODES}, comma-separated "
                                         f"(got {text!r})")
    return counts


def number_in(kind: type, low: float, high: float) -> Callable[[str], Any]:
    """An argparse type: a `kind` (int or float) from `low` to `high`."""
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            raise argparse.ArgumentTypeError(f"give a number from {low:g} to {high:g} (got {text!r})")
        return value
    return parse
