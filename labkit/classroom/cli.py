"""``labkit classroom ...``: the trainer's commands (argument parsing and printing only)."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..errors import LabError
from . import limits, progress, users


def _mib(n: int | None) -> str:
    return "-" if n is None else f"{n / (1 << 20):.0f} MiB"


def cmd_classroom(a: argparse.Namespace) -> int:
    if a.verb == "add-users":
        if (a.n is None) == (a.file is None):
            raise LabError("give a number of learners or --file USERS (one name per line, name:password allowed)")
        wanted: list[tuple[str, str | None]] = (users.read_users_file(a.file) if a.file else
                                                [(n, None) for n in users.names_for(a.n, a.prefix)])
        made = users.add(wanted)
        for lr in made:
            print(f"{lr.name}\t{lr.password if lr.password else '(existed: password unchanged)'}")
        print(f"{len(made)} learners in group {users.GROUP}; hand each their password "
              "(shown once)", file=sys.stderr)
        return 0
    if a.verb == "remove-users":
        names = list(a.names)
        if a.prefix:
            names += [lr.name for lr in users.learners(users.check_prefix(a.prefix))]
        if not names:
            raise LabError("name the learners to remove, or --prefix P for every learner starting with P")
        for n in users.remove(names):
            print(f"removed {n}")
        return 0
    if a.verb == "list":
        kind, why = limits.mechanism()
        print(f"limits: {kind} ({why})")
        for lr in users.learners(a.prefix):
            u = limits.usage(lr.name)
            cpu = "-" if u.cpu_seconds is None else f"{u.cpu_seconds:.1f} s"
            print(f"{lr.name}\tuid {lr.uid}\t{lr.home}\tmemory {_mib(u.memory_now)} (peak {_mib(u.memory_peak)})"
                  f"\tcpu {cpu}")
        return 0
    if a.verb == "progress":
        rows = progress.class_rows(a.users or None)
        if a.csv:
            sys.stdout.write(progress.to_csv(rows))
        elif a.json:
            out: dict[str, Any] = {"summary": progress.summary(rows),
                                   "rows": [{f: getattr(r, f) for f in progress.FIELDS} for r in rows]}
            print(json.dumps(out, indent=1))
        else:
            for s in progress.summary(rows):
                print(f"{s['learner']}: started {s['started']}, solved {s['solved']}, hints {s['hints_used']}, "
                      f"{s['minutes_solving']} min on solved ones  {', '.join(s['solved_names'])}")
        return 0
    if a.verb == "hub":
        from . import hub
        st = hub.Settings(ip=a.listen, port=a.port, memory=limits.parse_size(a.memory) if a.memory != "0" else None,
                         tasks=a.tasks or None, cpus=a.cpus or None, cull_timeout=a.cull_timeout,
                         trainers=a.trainer, admin_token_file=a.api_token_file, sandbox=not a.no_sandbox,
                         state=a.state or hub.DEFAULT_STATE)
        if st.cull_timeout < 60:
            raise LabError(f"--cull-timeout must be at least 60 seconds; found {st.cull_timeout}", field="cull_timeout")
        if st.cpus is not None and not 0.1 <= st.cpus <= 64:
            raise LabError(f"--cpus must be 0.1 to 64; found {st.cpus}", field="cpus")
        if st.tasks is not None and not 64 <= st.tasks <= 1 << 20:
            raise LabError(f"--tasks must be 64 or more; found {st.tasks}", field="tasks")
        hub.serve(st)
    raise LabError(f"unknown classroom command {a.verb}")


def add_parser(sub: Any) -> None:
    """The ``classroom`` command and its verbs, on labkit's top-level subparsers."""
    cr = sub.add_parser("classroom", help="a class on one server: learner accounts, the hub, the class's progress",
                        description="classroom: add-users, remove-users, list, progress, hub (README: classroom)")
    v = cr.add_subparsers(dest="verb", required=True, metavar="VERB")
    au = v.add_parser("add-users", help="make N learner accounts (PREFIX01..), or those in a users file")
    au.add_argument("n", type=int, nargs="?", help="how many learners")
    au.add_argument("--prefix", default=users.DEFAULT_PREFIX, help=f"name prefix (default {users.DEFAULT_PREFIX})")
    au.add_argument("--file", help="a users file: one name (or name:password) per line")
    ru = v.add_parser("remove-users", help="remove learner accounts, their labs and home directories")
    ru.add_argument("names", nargs="*", help="learner names")
    ru.add_argument("--prefix", help="every learner whose name starts with this")
    ls = v.add_parser("list", help="the learners, and memory and CPU each has used (their cgroup)")
    ls.add_argument("--prefix", help="only names starting with this")
    pr = v.add_parser("progress", help="each learner's scenarios: started, solved, hints, minutes")
    pr.add_argument("users", nargs="*", help="only these learners")
    pr.add_argument("--csv", action="store_true", help="CSV, one row per learner and scenario")
    pr.add_argument("--json", action="store_true", help="JSON: summary and rows")
    hb = v.add_parser("hub", help="start the class's JupyterHub (./run hub installs what it needs first)")
    hb.add_argument("--listen", default="127.0.0.1",
                    help="address the hub's page listens on (default 127.0.0.1; a class network's address "
                         "of this machine, or 0.0.0.0, to let learners in)")
    hb.add_argument("--port", type=int, default=8000, help="the hub's port (default 8000; the next three are used "
                                                            "on 127.0.0.1)")
    hb.add_argument("--memory", default="2G", help="memory per learner (default 2G; 0: no limit)")
    hb.add_argument("--tasks", type=int, default=1024, help="processes and threads per learner (default 1024)")
    hb.add_argument("--cpus", type=float, default=0, help="CPUs per learner, e.g. 1.0 (default: no limit)")
    hb.add_argument("--cull-timeout", type=int, default=3600, help="stop a server idle this many seconds "
                                                                   "(default 3600)")
    hb.add_argument("--trainer", action="append", default=[], help="a Unix user who sees the trainer's view "
                                                                   "(repeatable)")
    hb.add_argument("--api-token-file", help="a file holding an API token for scripts (admin of the class)")
    hb.add_argument("--state", help="the hub's state folder (default .hub in the clone)")
    hb.add_argument("--no-sandbox", action="store_true", help=argparse.SUPPRESS)
    cr.set_defaults(fn=cmd_classroom)
