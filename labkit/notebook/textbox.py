"""A widget box whose text form is its own ``repr``, whole.

What nbval stores for a widget is its text/plain form, and ipywidgets cuts that to 110
characters. The challenge, the predict prompt and the gauntlet's cards and scoreboard
store their whole text instead (the task unsolved, the question with its answer hidden).
"""
from __future__ import annotations

import ipywidgets as W


class TextBox(W.VBox):
    """A VBox shown as text by ``repr(self)``: subclasses define ``__repr__``."""

    def _repr_pretty_(self, p: object, cycle: bool) -> None:
        p.text(repr(self))  # type: ignore[attr-defined]  # IPython's pretty printer

    def _repr_mimebundle_(self, **kwargs: object) -> dict[str, object] | None:
        bundle: dict[str, object] | None = super()._repr_mimebundle_(**kwargs)
        if bundle is not None:
            bundle["text/plain"] = repr(self)
        return bundle
