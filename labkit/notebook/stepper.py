"""A stepper over a packet's walk (:mod:`labkit.pictures.walk`) for JupyterLab.

A slider (and ◀ ▶) frames one hop in the walk's picture and prints that hop in full below
its controls. What a notebook stores for it (and nbval compares) is one line of text; the
static picture of every hop is the walk itself, shown in the cell before.
"""
from __future__ import annotations

from html import escape

import ipywidgets as W

from ..pictures.walk import Walk
from .textbox import TextBox


class Stepper(TextBox):
    def __init__(self, walk: Walk) -> None:
        self.walk = walk
        n = len(walk.hops)
        self.slider = W.IntSlider(value=1, min=1, max=n, description="hop")
        back = W.Button(description="◀", layout=W.Layout(width="40px"))
        forward = W.Button(description="▶", layout=W.Layout(width="40px"))
        self.detail, self.picture = W.HTML(), W.HTML()
        back.on_click(lambda _b: self.step(-1))
        forward.on_click(lambda _b: self.step(1))
        self.slider.observe(lambda _change: self.show(), names="value")
        super().__init__([W.HBox([back, self.slider, forward]), self.detail, self.picture])
        self.show()

    def step(self, delta: int) -> None:
        self.slider.value = min(max(self.slider.value + delta, 1), len(self.walk.hops))

    def show(self) -> None:
        i = self.slider.value - 1
        self.picture.value = self.walk.svg(highlight=i)
        self.detail.value = f"<pre>{escape(self.walk.hop_text(i))}</pre>"

    def __repr__(self) -> str:
        w = self.walk
        return (f"packet walk stepper: {len(w.hops)} hops, {w.src} → {w.dst} "
                "(a slider over the picture; each hop in full below it)")
