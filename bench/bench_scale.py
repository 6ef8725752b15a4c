#!/usr/bin/env python3
"""Bring-up of a vxlan lab to a fully converged mesh, at 10, 50 and 100 nodes.

For each size: `up` (underlay, etcd, config, flanneld and docker on every node) until
every node has a route for every peer's lease, then a sample of node-to-node pings
across the overlay (to a random peer's docker0 address, so through flannel.1). The
time is wall time from the start of `up` to the last ping; the memory is the sum of
the PSS (proportional set size: shared pages counted once) of every process of the
lab, with a breakdown per kind of process.

Targets on a 2-core machine: 50 nodes <= 30 s and <= 1.5 GB; 100 nodes completes.
Figures are printed, never asserted. Each lab is removed before the next one.

    ./run bench                 python bench/bench_scale.py --sizes 10,50
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from labkit import bench  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="10,50,100", help="node counts (default 10,50,100)")
    p.add_argument("--pings", type=int, default=10, help="cross-node pings per size (default 10)")
    p.add_argument("--name", default="scale", help="lab name prefix (the size is appended)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON too")
    a, _ = p.parse_known_args(argv)   # ./run bench passes the same arguments to every script
    res = bench.scale([int(x) for x in a.sizes.split(",") if x], name=a.name, pings=a.pings,
                      progress=lambda m: print(m, flush=True))
    print()
    print(bench.format_scale(res))
    if a.json:
        print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
