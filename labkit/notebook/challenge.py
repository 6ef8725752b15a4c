"""The challenge widget: a scenario's task, Check, Hint, elapsed time, and the solution on request.

It talks only to the scenario engine (:class:`labkit.scenario.engine.Challenge`) and uses
:mod:`.tables` for its check table. Every button has a method that does the same
(``check()``, ``hint()``, ``ask_solution()``/``show_solution()``), so a cell can drive it.
Its text form (what a notebook stores as text/plain, and what nbval compares) is the task
in its unsolved state: title, task text and the checks to pass, no results, hints or time.
"""
from __future__ import annotations

import html

import ipywidgets as W

from ..errors import LabError
from ..scenario.engine import Challenge, Report
from . import tables
from .textbox import TextBox

CHECK_HEADER = ["", "check", "role", "expected", "found", "where to look"]


def report_table(report: Report) -> tables.Table:
    rows = [[tables.mark(r.ok), r.id, r.role, r.expected, r.found, "" if r.ok else r.show] for r in report.results]
    return tables.Table(CHECK_HEADER, rows, title="SOLVED" if report.solved else "not solved yet")


def report_html(report: Report) -> str:
    rows = [[tables.mark(r.ok), r.id, r.role, r.expected, r.found, "" if r.ok else r.show] for r in report.results]

    def style(col: int, cell: object) -> str:
        if col == 0:
            return "color:#1a7f37;font-weight:bold" if cell == tables.OK else "color:#cf222e;font-weight:bold"
        return "font-family:monospace" if col == 5 else ""
    verdict = ("<b style='color:#1a7f37'>Solved: every outcome check passes.</b>" if report.solved else
               "<b>Not solved yet.</b>")
    return verdict + tables.html_table(CHECK_HEADER, rows, cell_style=style)


def task_text(ch: Challenge) -> str:
    sc = ch.scenario
    lines = [f"{sc.title}  ({sc.name}, ~{sc.minutes} min)", "", sc.summary, "", "to pass:"]
    lines += [f"  [ ] {c['id']}" + (f": {c['title']}" if c.get("title") else "")
              for c in sc.checks if c["role"] == "outcome"]
    return "\n".join(lines)


class ChallengeWidget(TextBox):
    """Task, Check (per-check ✓/✗ table), Hint (tier by tier), elapsed time, Show solution (asks first)."""

    def __init__(self, challenge: Challenge) -> None:
        self.challenge = challenge
        sc = challenge.scenario
        self.task = W.HTML(f"<h3>{html.escape(sc.title)}</h3><p>{html.escape(sc.summary)}</p>")
        self.check_button = W.Button(description="Check", button_style="primary", icon="check")
        self.hint_button = W.Button(description="Hint", icon="lightbulb-o")
        self.solution_button = W.Button(description="Show solution", button_style="warning")
        self.confirm = W.Button(description="Yes, show it", button_style="danger")
        self.cancel = W.Button(description="Not yet")
        self.ask = W.HBox([W.HTML("Show the solution? It gives the answer away."), self.confirm, self.cancel],
                          layout=W.Layout(display="none"))
        self.clock = W.HTML()
        self.results = W.HTML()
        self.hints = W.HTML()
        self.solution = W.HTML()
        self.check_button.on_click(lambda _b: self.check())
        self.hint_button.on_click(lambda _b: self.hint())
        self.solution_button.on_click(lambda _b: self.ask_solution())
        self.confirm.on_click(lambda _b: self.show_solution())
        self.cancel.on_click(lambda _b: self._hide_ask())
        super().__init__([self.task, W.HBox([self.check_button, self.hint_button, self.solution_button,
                                             self.clock]), self.ask, self.results, self.hints, self.solution])
        self._show_hints(self._hints_shown())
        self.tick()

    def __repr__(self) -> str:
        return task_text(self.challenge)


    def _hints_shown(self) -> int:
        try:
            return self.challenge.hints_shown()
        except LabError:
            return 0

    def tick(self) -> str:
        """Refresh the elapsed time (every button does; it is also a method for a cell)."""
        try:
            secs = int(self.challenge.elapsed())
            text = f"⏱ {secs // 60} min {secs % 60:02d} s"
        except LabError:
            text = "(not started)"
        self.clock.value = f"<span style='margin-left:1em'>{text}</span>"
        return text

    def check(self) -> Report | None:
        self.check_button.disabled = True
        self.results.value = "<i>checking...</i>"
        try:
            report = self.challenge.check()
        except LabError as e:
            self.results.value = f"<span style='color:#cf222e'>{html.escape(str(e))}</span>"
            return None
        finally:
            self.check_button.disabled = False
            self.tick()
        self.results.value = report_html(report)
        return report

    def _show_hints(self, shown: int) -> None:
        tiers = self.challenge.scenario.hints[:shown]
        self.hints.value = "".join(f"<p><b>Hint {i} of {len(self.challenge.scenario.hints)}:</b> "
                                   f"{html.escape(t)}</p>" for i, t in enumerate(tiers, 1))
        self.hint_button.disabled = shown >= len(self.challenge.scenario.hints)

    def hint(self) -> str:
        try:
            tier, text = self.challenge.hint()
        except LabError as e:
            self.hints.value = f"<span style='color:#cf222e'>{html.escape(str(e))}</span>"
            return str(e)
        self._show_hints(tier)
        self.tick()
        return text

    def ask_solution(self) -> None:
        self.ask.layout.display = "flex"

    def _hide_ask(self) -> None:
        self.ask.layout.display = "none"

    def show_solution(self) -> str:
        """Reveal the solution's steps and the explanation (it does not apply them: `challenge.solve()` does)."""
        self._hide_ask()
        text = self.challenge.solution_text()
        self.challenge.progress.solution_shown(self.challenge.scenario.name)
        self.solution.value = (f"<p><b>Solution</b></p><pre>{html.escape(text)}</pre>"
                               f"<p>{html.escape(self.challenge.scenario.explanation)}</p>")
        self.tick()
        return text


def challenge_widget(scenario: str, name: str = "scenario", start: bool = True) -> ChallengeWidget:
    """Build the scenario's lab (unless it already runs there) and return its widget."""
    ch = Challenge(scenario, name=name)
    if start:
        ch.start()
    return ChallengeWidget(ch)
