#!/usr/bin/env python3
"""Bring-up of a vxlan lab to a fully converged mesh, at 10, 50 and 100 nodes (and 250).

For each size: `up` (underlay, etcd, config, flanneld and docker on every node) until
every node has a route for every peer's lease, then until every node also has every
peer's ARP and FDB entry, then a sample of node-to-node pings across the overlay (to a
random peer's docker0 address, so through flannel.1). Times are wall time from the start
of `up`; the memory is the sum of the PSS (proportional set size: shared pages counted
once) of every process of the lab, per kind and per process; CPU-seconds per kind of
process. Then the 2-node bring-up to a first cross-node container ping, from the library
and through the CLI (median of 3 interleaved pairs). README: Benchmarks says what each
figure means.

Targets on a 2-core machine: 100 nodes <= 10 s and <= 1 GiB; 250 nodes completes; 2 nodes
to a first ping <= 0.5 s (library), <= 1 s (CLI). Figures are printed, never asserted.
Each lab is removed before the next one.

    ./run bench                 python bench/bench_scale.py --sizes 10,50,100,250 --json
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from labkit import bench, bench_args  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=bench_args.sizes, default=[10, 50, 100], help="node counts (default 10,50,100)")
    p.add_argument("--pings", type=bench_args.number_in(int, 0, 1000), default=10,
                   help="cross-node pings per size (default 10)")
    p.add_argument("--name", default="scale", help="lab name prefix (the size is appended)")
    p.add_argument("--no-bringup", action="store_true", help="skip the 2-node bring-up to a first ping")
    p.add_argument("--json", action="store_true", help="print the figures as JSON too")
    a, _ = p.parse_known_args(argv)   # ./run bench passes the same arguments to every script
    res = bench.scale(a.sizes, name=a.name, pings=a.pings,
                      bringup_runs=0 if a.no_bringup else 3,
                      progress=lambda m: print(m, flush=True))
    print()
    print(bench.format_scale(res))
    if a.json:
        print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
