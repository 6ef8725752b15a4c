"""`journalctl -u UNIT [-n N] [-f]`: a node service's log."""
from __future__ import annotations

import argparse
import sys
import time

from . import current, run


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="journalctl")
    p.add_argument("-u", "--unit", required=True)
    p.add_argument("-n", "--lines", type=int, default=None)
    p.add_argument("-f", "--follow", action="store_true")
    p.add_argument("--no-pager", action="store_true")
    p.add_argument("-x", "-e", action="store_true", dest="ignored")
    a = p.parse_args(argv)
    unit = a.unit[:-8] if a.unit.endswith(".service") else a.unit
    _, node = current()
    svc = node.service(unit)
    lines = svc.log().splitlines()
    if a.lines is not None:
        lines = lines[-a.lines:] if a.lines else []
    print("\n".join(lines))
    if a.follow:
        seen = len(svc.log())
        while True:
            text = svc.log()
            if len(text) > seen:
                sys.stdout.write(text[seen:])
                sys.stdout.flush()
                seen = len(text)
            time.sleep(0.2)
    return 0


if __name__ == "__main__":
    run(main)
