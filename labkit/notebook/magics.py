"""``%node`` and ``%%node``: type a command at a node's prompt from a notebook cell.

    %load_ext labkit.magics
    %node master etcdctl get /coreos.com/network/config
    %node node1 ip -d link show flannel.1

    %%node node1
    cat /run/flannel/subnet.env
    ip route

The command line goes, as typed, to ``bash -c`` on the node (or container: ``node1/c1``)
of the lab in use (:func:`labkit.notebook.use`, the lab a notebook ``start``-ed, or the only
running lab). Nothing in it is expanded by IPython: the blog's JSON with its braces and
quotes reaches the node untouched. stdout and stderr are shown in the cell; a non-zero
exit status is shown as ``[exit N]``.

Options, before the node: ``--lab NAME`` (another running lab), ``--timeout SECONDS``
(default 60).
"""
from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Protocol, TypedDict

from IPython.core.magic import no_var_expand

from ..errors import LabError
from ..lab import Lab
from .session import current
from .session import use as session_use

USAGE = "usage: %node [--lab NAME] [--timeout SECONDS] NODE COMMAND...   (NODE: master, node1, node1/c1)"


class NodeOptions(TypedDict, total=False):
    """The options of a %node line (parse_line)."""
    lab: str
    timeout: float


class MagicRegistry(Protocol):
    """What load_ipython_extension uses of IPython's InteractiveShell (typeshed types its
    functools.wraps-ed register_magic_function as a plain function, not a method)."""
    def register_magic_function(self, func: Callable[..., None], magic_kind: str = ...,
                                magic_name: str | None = ...) -> None: ...


def use(lab: Lab) -> Lab:
    """Make `lab` the one %node talks to."""
    return session_use(lab)


def parse_line(line: str) -> tuple[NodeOptions, str, str]:
    """'--lab x node1 ip route' -> ({'lab': 'x'}, 'node1', 'ip route').

    Only the options and the node are split off; the rest of the line is kept
    byte for byte (quotes, braces and all) for the node's shell.
    """
    opts: NodeOptions = {}
    rest = line.strip()
    while rest.startswith("--"):
        flag, _, rest = rest.partition(" ")
        rest = rest.lstrip()
        if flag not in ("--lab", "--timeout"):
            raise LabError(f"unknown option {flag}; {USAGE}")
        value, _, rest = rest.partition(" ")
        rest = rest.lstrip()
        if not value:
            raise LabError(f"{flag} needs a value; {USAGE}")
        if flag == "--timeout":
            try:
                opts["timeout"] = float(value)
            except ValueError:
                raise LabError(f"--timeout needs a number of seconds, got {value!r}") from None
        else:
            opts["lab"] = value
    target, _, command = rest.partition(" ")
    if not target:
        raise LabError(USAGE)
    return opts, target, command.strip()


def run(target: str, command: str, lab: Lab | None = None, timeout: float = 60) -> None:
    """Run `command` on `target` and print its stdout and stderr (and `[exit N]` when it
    fails): what %node does, for a command line built in Python."""
    if lab is None:
        lab = current()
    if not command.strip():
        raise LabError(f"nothing to run on {target}; {USAGE}")
    r = lab.sh(target, command, timeout=timeout, via="%node")
    if r.stdout:
        sys.stdout.write(r.stdout if r.stdout.endswith("\n") else r.stdout + "\n")
        sys.stdout.flush()
    if r.stderr:
        sys.stderr.write(r.stderr if r.stderr.endswith("\n") else r.stderr + "\n")
    if r.returncode != 0:
        sys.stderr.write(f"[exit {r.returncode}]\n")
    sys.stderr.flush()


def _lab_for(opts: NodeOptions) -> Lab | None:
    if "lab" in opts:
        return Lab.attach(opts["lab"])
    return None


def node_line(line: str) -> None:
    try:
        opts, target, command = parse_line(line)
        run(target, command, lab=_lab_for(opts), timeout=opts.get("timeout", 60))
    except LabError as e:
        print(f"labkit: {e}", file=sys.stderr)


def node_cell(line: str, cell: str) -> None:
    try:
        opts, target, extra = parse_line(line)
        if extra:
            raise LabError(f"%%node takes the node on its first line and the commands below; {USAGE}")
        run(target, cell, lab=_lab_for(opts), timeout=opts.get("timeout", 60))
    except LabError as e:
        print(f"labkit: {e}", file=sys.stderr)


def load_ipython_extension(ipython: MagicRegistry) -> None:

    node_line.__doc__ = node_cell.__doc__ = __doc__
    ipython.register_magic_function(no_var_expand(node_line), "line", "node")
    ipython.register_magic_function(no_var_expand(node_cell), "cell", "node")


__all__ = ["load_ipython_extension", "use", "run", "parse_line"]
