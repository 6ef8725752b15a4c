"""Commands a learner types inside a node that a real host gets from systemd and docker.

``systemctl``, ``journalctl``, ``docker`` (and a thin ``etcdctl`` wrapper) are put on
the node's PATH (``labkit/shims/bin``). They drive the lab's node services: the same
``Service`` objects the CLI and the notebooks use. Everything else a node shell runs
(``ip``, ``ifconfig``, ``bridge``, ``ping``, ``etcdctl``, ``tcpdump``) is the real program.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, NoReturn

from ..errors import BROKEN_PIPE_EXIT, LabError, internal_error, quiet_stdout

if TYPE_CHECKING:
    from ..lab import Lab
    from ..node import Node

# The units themselves (descriptions, Before=/After=, Restart=) are data in labkit/units.py.


def current() -> tuple[Lab, Node]:
    """(lab, node) for the node this command runs on."""
    # imported here, not at the top: labkit.lab takes ~0.17 s to import (python -X importtime),
    # and the etcdctl wrapper, which never needs it, is in this package and runs on every call
    from ..lab import Lab
    lab_name, node_name = os.environ.get("LABKIT_LAB"), os.environ.get("LABKIT_NODE")
    if not lab_name or not node_name:
        raise LabError("this command only works inside a lab node (labkit shell NODE)")
    lab = Lab.attach(lab_name)
    return lab, lab.node(node_name)


def run(main: Callable[[list[str]], int | None]) -> NoReturn:
    """Entry point wrapper: LabError -> one line on stderr, exit 1; a reader that has gone
    (`docker ps -q | head -1`) ends the command quietly, as SIGPIPE ends a C program."""
    try:
        code = main(sys.argv[1:]) or 0
        sys.stdout.flush()
    except LabError as e:
        print(str(e), file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        quiet_stdout()
        sys.exit(BROKEN_PIPE_EXIT)
    except Exception as e:  # a bug, not bad input: one line, as `labkit` itself says it
        if os.environ.get("LABKIT_DEBUG"):
            raise
        print(internal_error(main.__module__.rsplit(".", 1)[-1], e), file=sys.stderr)
        sys.exit(1)
    sys.exit(code)
