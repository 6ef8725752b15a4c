#!/usr/bin/env python3
"""iperf3 through each flannel backend, against the bare underlay, in one run.

One lab of two nodes with a container each. First the underlay (node to node over
eth0), then container to container through each backend in turn (the lab switches
backends the way an admin does: new config in etcd, flanneld then docker restarted on
every node). For each path: one TCP stream (Gbit/s, and the ratio to the underlay) and
a flood of small UDP datagrams (packets per second that arrive, and the ratio). This
is the blog's opening claim put to the test: udp forwards every packet through a
user-space proxy, vxlan stays in the kernel, host-gw adds nothing at all.

In the same run a reference overlay is built by hand with plain `ip` commands on the same
switch (labkit/reference.py: same bridges and VXLAN settings, no flanneld, no docker), and
each backend's runs are interleaved with the reference's: the ratio lab/reference is the
median of the pairs (README: Benchmarks). Targets: vxlan and host-gw >= 0.95 x the
reference, udp within 10x of vxlan. The figures are printed, whatever they are; nothing is
asserted.
All traffic stays between the lab's namespaces; each measurement is bounded in time.

    ./run bench                 python bench/bench_throughput.py --seconds 10 --json
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from labkit import bench, bench_args  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backends", default="vxlan,host-gw,udp", help="comma-separated, in order")
    p.add_argument("--seconds", type=bench_args.number_in(int, 1, 600), default=5,
                   help="whole seconds per TCP measurement, 1 to 600 (default 5)")
    p.add_argument("--pps-seconds", type=bench_args.number_in(float, 1, 600), default=None,
                   help="seconds per UDP flood (default 3)")
    p.add_argument("--repeat", type=bench_args.number_in(int, 1, 50), default=3,
                   help="runs per measurement (at least 3), interleaved with the reference's; the median is shown")
    p.add_argument("--no-reference", action="store_true", help="skip the hand-built reference overlay")
    p.add_argument("--name", default="benchtp", help="name of the temporary lab")
    p.add_argument("--json", action="store_true", help="print the figures as JSON too")
    a, _ = p.parse_known_args(argv)   # ./run bench passes the same arguments to every script
    res = bench.throughput([b for b in a.backends.split(",") if b], seconds=a.seconds,
                           pps_seconds=a.pps_seconds, name=a.name, repeat=a.repeat,
                           reference=not a.no_reference,
                           progress=lambda m: print(m, flush=True))
    print()
    print(bench.format_throughput(res))
    if a.json:
        print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
