"""The "predict, then run" prompt: a question, the learner's answer, then the explanation.

``Predict(question, options=[...], correct=1, answer="...", explanation="...")`` shows the
question with its options (or a free-text box when there are none) and a **Commit my answer**
button. Only after the learner commits does it reveal the answer and the explanation (and,
for options, whether the choice was right). Until then the answer lives only in this Python
object: no child widget holds it, so neither the notebook's stored text nor its saved widget
state gives it away. Its text form (what nbval stores) is the question and
"answer hidden until you commit".

The notebooks put a Predict cell right before the cell whose output answers it, with the
cell's source collapsed (the source holds the answer).
"""
from __future__ import annotations

import html
from collections.abc import Sequence

import ipywidgets as W

from .textbox import TextBox

HIDDEN = "answer hidden until you commit"


class Predict(TextBox):
    """A question; options (radio buttons) or a free-text box; Commit; then the answer."""

    def __init__(self, question: str, answer: str, explanation: str = "", options: Sequence[str] = (),
                 correct: int | None = None) -> None:
        if options and correct is not None and not 0 <= correct < len(options):
            raise ValueError(f"correct must index options (0..{len(options) - 1}), got {correct}")
        self.question = question
        self.options = list(options)
        self.correct = correct
        self._answer = answer
        self._explanation = explanation
        self.committed: str | None = None
        self.choice: W.RadioButtons | None = None
        self.text: W.Textarea | None = None
        if self.options:
            self.choice = W.RadioButtons(options=self.options, value=None, layout=W.Layout(width="auto"))
            entry: W.Widget = self.choice
            self.choice.observe(lambda _c: self._enable(), names="value")
        else:
            self.text = W.Textarea(placeholder="your prediction", layout=W.Layout(width="90%", height="4em"))
            entry = self.text
            self.text.observe(lambda _c: self._enable(), names="value")
        self.commit_button = W.Button(description="Commit my answer", button_style="primary", icon="lock",
                                      disabled=True, layout=W.Layout(width="auto"))
        self.commit_button.on_click(lambda _b: self.commit())
        self.feedback = W.HTML()          # empty until commit: the answer is not in the widget state
        super().__init__([W.HTML(f"<b>Predict, then run.</b> {html.escape(question)}"), entry,
                          W.HBox([self.commit_button, W.HTML(f"<small><i>{HIDDEN}</i></small>")]),
                          self.feedback],
                         layout=W.Layout(border="1px solid #d0d7de", padding="6px"))
        self.add_class("labkit-predict")

    # -- state ---------------------------------------------------------------------------------
    @property
    def revealed(self) -> bool:
        return self.committed is not None

    def _current(self) -> str:
        if self.choice is not None:
            return str(self.choice.value or "")
        return (self.text.value if self.text is not None else "").strip()

    def _enable(self) -> None:
        self.commit_button.disabled = self.revealed or not self._current()

    def right(self) -> bool | None:
        """Whether the committed option is the correct one (None: free text, or not committed)."""
        if self.committed is None or self.correct is None or not self.options:
            return None
        return self.committed == self.options[self.correct]

    def answer(self) -> str:
        """The answer, once committed; before that, the hidden marker."""
        return self._answer if self.revealed else HIDDEN

    def commit(self, value: str | int | None = None) -> str:
        """What the button does: lock the prediction (`value`: an option, its index, or text;
        default: what is selected or typed) and reveal the answer. Returns the feedback as text."""
        if self.revealed:
            return self.result_text()
        if isinstance(value, int) and self.options:
            value = self.options[value]
        if value is not None:
            if self.choice is not None:
                if value not in self.options:
                    raise ValueError(f"{value!r} is not one of the options")
                self.choice.value = value
            elif self.text is not None:
                self.text.value = str(value)
        current = self._current()
        if not current:
            raise ValueError("nothing to commit: choose an option or type a prediction first")
        self.committed = current
        if self.choice is not None:
            self.choice.disabled = True
        if self.text is not None:
            self.text.disabled = True
        self.commit_button.disabled = True
        verdict = {True: "<b style='color:#1a7f37'>Right.</b> ", False: "<b style='color:#cf222e'>Not quite.</b> ",
                   None: ""}[self.right()]
        self.feedback.value = (f"<p>{verdict}<b>Answer:</b> {html.escape(self._answer)}</p>"
                               + (f"<p>{html.escape(self._explanation)}</p>" if self._explanation else ""))
        return self.result_text()

    def result_text(self) -> str:
        if not self.revealed:
            return HIDDEN
        verdict = {True: "right", False: "not quite", None: "committed"}[self.right()]
        return "\n".join([f"your answer: {self.committed} ({verdict})", f"answer: {self._answer}"]
                         + ([self._explanation] if self._explanation else []))

    # -- text form -----------------------------------------------------------------------------
    def __repr__(self) -> str:
        lines = [f"PREDICT, THEN RUN: {self.question}"]
        lines += [f"  ({chr(97 + i)}) {o}" for i, o in enumerate(self.options)] or ["  (free text)"]
        lines.append(f"[{HIDDEN}]" if not self.revealed else f"[committed: {self.committed}]")
        return "\n".join(lines)

