"""Saying what happened on many nodes in one line: counts, ranges, the slowest node, a bar.

A 3-node lab's progress lists every node (``master=10.108.84.1/24, node1=...``), which is
what a learner wants to read. A 100-node lab's would be a hundred pairs per line, so above
:data:`LIST_UP_TO` items the same facts are summarised: how many, the range of the values
(lowest .. highest address), how many are shared, and the slowest node with the median,
which is where a scale problem shows first. Pure functions, plus a progress bar for a
terminal; the notebook's bar lives in ``labkit/notebook/session.py``.
"""
from __future__ import annotations

import ipaddress
import statistics
import sys
import time
from collections.abc import Mapping
from typing import IO

LIST_UP_TO = 8   # more items than this are summarised


def _key(value: str) -> tuple[int, object]:
    try:
        return 0, ipaddress.ip_interface(value)
    except ValueError:
        return 1, value


def listing(items: Mapping[str, str], what: str = "nodes") -> str:
    """``a=x, b=y`` for a few items; for many: ``100 nodes: 10.108.1.1/24 .. 10.108.99.1/24``
    (sorted as addresses when they are), with the number of distinct values if some repeat
    and of the missing ones ('-' or empty)."""
    if len(items) <= LIST_UP_TO:
        return ", ".join(f"{k}={v}" for k, v in items.items())
    present = sorted((v for v in items.values() if v and v != "-"), key=_key)
    text = f"{len(items)} {what}"
    if present:
        text += f": {present[0]} .. {present[-1]}"
        distinct = len(set(present))
        if distinct < len(present):
            text += f" ({distinct} distinct)"
    missing = len(items) - len(present)
    if missing:
        text += f", {missing} without one"
    return text


def slowest(times: Mapping[str, float]) -> str:
    """``slowest node37 0.84s (median 0.31s)``, or '' for fewer than two timings."""
    if len(times) < 2:
        return ""
    name = max(times, key=lambda k: times[k])
    return f"slowest {name} {times[name]:.2f}s (median {statistics.median(times.values()):.2f}s)"


def counts(values: Mapping[str, int], want: int) -> str:
    """How far nodes are from `want` (e.g. peer routes): ``97/100 complete; node3 95, node8 96``."""
    short = {k: v for k, v in values.items() if v < want}
    done = len(values) - len(short)
    text = f"{done}/{len(values)} nodes have all {want}"
    if short:
        worst = sorted(short.items(), key=lambda kv: kv[1])[:5]
        text += "; fewest: " + ", ".join(f"{k} {v}" for k, v in worst)
        if len(short) > len(worst):
            text += f" (+{len(short) - len(worst)} more)"
    return text


def bar(done: int, total: int, width: int = 30) -> str:
    """``[###########...................]  37/100``"""
    total = max(total, 1)
    filled = min(width, width * max(done, 0) // total)
    return f"[{'#' * filled}{'.' * (width - filled)}] {done:>{len(str(total))}}/{total}"


class TerminalBar:
    """A ticker (``step, done, total``) that redraws one line on a terminal (carriage return),
    at most ten times a second and always at the end; silent when the stream is not a tty,
    so logs and pipes only get the step's summary line."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stderr
        self.last = 0.0
        self.drawn = False

    def __call__(self, step: str, done: int, total: int) -> None:
        if not self.stream.isatty():
            return
        now = time.monotonic()
        if done < total and now - self.last < 0.1:
            return
        self.last = now
        self.stream.write(f"\r{step:<12} {bar(done, total)}\x1b[K")
        if done >= total:
            self.stream.write("\r\x1b[K")
            self.drawn = False
        else:
            self.drawn = True
        self.stream.flush()
