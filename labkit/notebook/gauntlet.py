"""Challenges inside a notebook: one scenario lab per notebook, and notebook 09's gauntlet.

* ``start_challenge("docker-before-flanneld", "nb03c")`` builds the scenario's own lab the way
  :func:`.session.start` names and guards notebook labs: this run's LABKIT_NOTEBOOK_SUFFIX is
  appended (so the test suite's cleanup pattern, ``notebook_labs()``, covers it), a leftover of
  the same name is replaced only if a notebook kernel that is gone (or this one) built it, the
  lab is recorded as this kernel's and removed when the kernel exits (atexit) or dies (the
  session's reaper). It returns the :class:`.challenge.ChallengeWidget`; its text form is the
  unsolved task.
* ``check_summary(widget)`` runs the checks once (the widget shows the full table) and returns
  the ✓/✗ per outcome check, without the found values (random subnets, MACs) or the time.
* ``end_challenge(widget)`` removes the lab (a notebook's last cell).
* :class:`Gauntlet` (notebook 09): several scenarios, one lab at a time under one name; a card
  per scenario (its task and a **Start this one** button) and a :class:`Scoreboard` read from
  the per-user progress store.

A test run (LABKIT_NOTEBOOK_SUFFIX set) records no progress, as `labkit scenario verify` does
not: it is nobody's. Otherwise a notebook's challenges count in the learner's progress, like
`labkit scenario start` in a terminal.
"""
from __future__ import annotations

import html
import time
from collections.abc import Sequence

import ipywidgets as W

from ..errors import LabError
from ..lab import clean
from ..scenario.engine import Challenge
from ..scenario.model import load
from ..scenario.progress import NoProgress, Progress
from . import session, tables
from .challenge import ChallengeWidget
from .textbox import TextBox


def lab_name(name: str) -> str:
    """`name` with this run's suffix, as session.start names a notebook's lab."""
    return name + session._suffix() if session.NOTEBOOK_LAB.match(name) else name


def progress_store() -> Progress:
    """The per-user store; a test run's (LABKIT_NOTEBOOK_SUFFIX set) records nothing."""
    return NoProgress() if session._suffix() else Progress()


def start_challenge(scenario: str, name: str, progress: Progress | None = None) -> ChallengeWidget:
    """Build scenario `scenario` in this notebook's lab `name` (+ suffix) and return its widget."""
    asked, full = name, lab_name(name)
    session.check_removable(full, asked)
    if clean(full):
        print(f"(removed a lab {full} left over from an earlier run)", flush=True)
    ch = Challenge(scenario, name=full, progress=progress or progress_store())
    t0 = time.monotonic()
    ch.start()
    lab = ch.lab
    lab.state.set_owner(session.BUILT_BY)        # this kernel's: start() may replace it, others may not
    session._owned[full] = lab                   # removed at kernel exit ...
    session._start_reaper(lab)                   # ... or when the kernel is killed
    session.use(lab)                             # %node now talks to the challenge's lab
    print(f"scenario {scenario} started in lab {full} ({time.monotonic() - t0:.1f}s)", flush=True)
    return ChallengeWidget(ch)


def check_summary(widget: ChallengeWidget) -> tables.Table:
    """Run the checks once (the widget shows the whole table); ✓/✗ per outcome check, nothing else:
    the found values (random subnets, MACs) and the diagnostic checks (some watch a restarting
    flanneld) may differ from run to run, the outcome of an unsolved scenario does not."""
    report = widget.check()
    if report is None:
        raise LabError(f"the checks of {widget.challenge.scenario.name} could not run")
    outcome = report.outcome()
    rows = [[tables.mark(r.ok), r.id, r.title] for r in outcome]
    diagnostic = len(report.results) - len(outcome)
    title = (f"{'SOLVED' if report.solved else 'not solved yet'}: {sum(r.ok for r in outcome)} of "
             f"{len(outcome)} outcome checks pass; press Check in the widget for all {len(report.results)} "
             f"checks ({diagnostic} diagnostic), with expected, found and where to look")
    return tables.Table(["", "outcome check", ""], rows, title=title)


def end_challenge(widget: ChallengeWidget | None) -> None:
    """Remove the challenge's lab (and say so)."""
    if widget is None:
        return
    name = widget.challenge.name
    _remove(widget)
    print(f"lab {name} removed")


def _remove(widget: ChallengeWidget) -> None:
    lab = session._owned.pop(widget.challenge.name, None)
    widget.challenge.down()
    if lab is not None and session._current is lab:
        session._current = None


# -- notebook 09 ---------------------------------------------------------------------------------
def _minutes(secs: float | None) -> str:
    if secs is None:
        return "–"
    secs = int(secs)
    return f"{secs // 60} min {secs % 60:02d} s"


SCORE_HEADER = ["#", "scenario", "solved", "hints used", "time to solve", "solution shown"]


class Scoreboard(TextBox):
    """Per scenario of the gauntlet, from the per-user progress store: solved, hints, time."""

    def __init__(self, scenarios: Sequence[str], progress: Progress) -> None:
        self.scenarios = list(scenarios)
        self.progress = progress
        self.refresh_button = W.Button(description="Refresh", icon="refresh")
        self.refresh_button.on_click(lambda _b: self.refresh())
        self.body = W.HTML()
        super().__init__([W.HBox([W.HTML("<b>scoreboard</b> (your progress, kept across labs and sessions)"),
                                  self.refresh_button]), self.body])
        self.refresh()

    def rows(self) -> list[list[str]]:
        out = []
        for i, sc in enumerate(self.scenarios, 1):
            e = self.progress.get(sc)
            solved = "solved_at" in e
            out.append([str(i), sc, tables.OK if solved else "–", str(e.get("hints_used", 0)),
                        _minutes(e.get("seconds_to_solve")) if solved else "–",
                        "yes" if e.get("solution_shown") else "no"])
        return out

    def table(self) -> tables.Table:
        rows = self.rows()
        solved = sum(r[2] == tables.OK for r in rows)
        return tables.Table(SCORE_HEADER, rows, title=f"scoreboard: {solved} of {len(rows)} solved")

    def refresh(self) -> tables.Table:
        t = self.table()
        self.body.value = tables.html_table(t.header, t.rows)
        return t

    def __repr__(self) -> str:
        return self.table().text()



class Card(TextBox):
    """One scenario of the gauntlet: its task, and a button that starts it (stopping the one running)."""

    def __init__(self, gauntlet: Gauntlet, index: int) -> None:
        self.gauntlet = gauntlet
        self.index = index
        self.scenario = load(gauntlet.scenarios[index - 1])
        self.start_button = W.Button(description="Start this one", button_style="primary", icon="play")
        self.start_button.on_click(lambda _b: self.start())
        self.status = W.HTML()
        self.slot = W.VBox()
        super().__init__([W.HTML(f"<h4>{index}. {html.escape(self.scenario.title)}</h4>"
                                 f"<p>{html.escape(self.scenario.summary)}</p>"),
                          W.HBox([self.start_button, self.status]), self.slot])

    def start(self) -> ChallengeWidget | None:
        self.start_button.disabled = True
        self.status.value = "<i>building the lab (a few seconds) ...</i>"
        try:
            widget = self.gauntlet.start(self.index, display_in=self)
        except LabError as e:
            self.status.value = f"<span style='color:#cf222e'>{html.escape(str(e))}</span>"
            return None
        finally:
            self.start_button.disabled = False
        self.status.value = f"running in lab <code>{html.escape(widget.challenge.name)}</code>"
        return widget

    def __repr__(self) -> str:
        sc = self.scenario
        lines = [f"{self.index}. {sc.title}  ({sc.name}, {sc.tags.get('difficulty', '?')}, ~{sc.minutes} min)",
                 "", sc.summary.rstrip(), ""]
        g = self.gauntlet
        if g.current == self.index and g.widget is not None:
            lines.append("to pass:")
            lines += [f"  [ ] {c['id']}" + (f": {c['title']}" if c.get("title") else "")
                      for c in sc.checks if c["role"] == "outcome"]
            lines.append(f"running in lab {g.widget.challenge.name}: investigate, fix, then press Check")
        else:
            lines.append(f"not started: press \"Start this one\" (or run g.start({self.index}))")
        return "\n".join(lines)



class Gauntlet:
    """Scenarios to diagnose one after the other, in ONE lab `name` (+ suffix): starting one
    removes the one before, so a single scenario lab runs at a time."""

    def __init__(self, scenarios: Sequence[str], name: str = "nb09s") -> None:
        if not scenarios:
            raise LabError("a gauntlet needs at least one scenario")
        self.scenarios = [load(s).name for s in scenarios]     # every file is checked now, not at its turn
        self.name = name
        self.progress = progress_store()
        self.widget: ChallengeWidget | None = None
        self.current: int | None = None
        self._cards: dict[int, Card] = {}

    def card(self, index: int) -> Card:
        """Scenario `index` (from 1): its task and a Start button; nothing is built yet."""
        if not 1 <= index <= len(self.scenarios):
            raise LabError(f"scenario number {index} is not in 1..{len(self.scenarios)}")
        self._cards[index] = Card(self, index)
        return self._cards[index]

    def start(self, index: int, display_in: Card | None = None) -> ChallengeWidget:
        """Remove the scenario lab running now (if any), start scenario `index` and return its widget."""
        if not 1 <= index <= len(self.scenarios):
            raise LabError(f"scenario number {index} is not in 1..{len(self.scenarios)}")
        self.down(quiet=True)
        self.widget = start_challenge(self.scenarios[index - 1], self.name, progress=self.progress)
        self.current = index
        for i, c in self._cards.items():
            c.slot.children = (self.widget,) if i == index else ()
            if i != index:
                c.status.value = ""
        return self.widget

    def check(self) -> tables.Table:
        """Check the running scenario once (✓/✗ per check)."""
        if self.widget is None:
            raise LabError("no scenario is running: start one with g.start(N)")
        return check_summary(self.widget)

    def hint(self) -> str:
        if self.widget is None:
            raise LabError("no scenario is running: start one with g.start(N)")
        return self.widget.hint()

    def scoreboard(self) -> Scoreboard:
        return Scoreboard(self.scenarios, self.progress)

    def down(self, quiet: bool = False) -> None:
        """Remove the running scenario's lab."""
        if self.widget is not None:
            name = self.widget.challenge.name
            _remove(self.widget)
            for c in self._cards.values():
                c.slot.children = ()
                c.status.value = ""
            if not quiet:
                print(f"lab {name} removed")
        elif not quiet:
            print("no scenario lab is running")
        self.widget = None
        self.current = None
