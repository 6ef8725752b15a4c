#!/usr/bin/env python3
"""Time from nothing to the first successful cross-node container ping, and the lab's memory.

For each size (default 2 and 20 nodes): build a lab with one container per node, then
ping from the master's container to the last node's container until it answers. The
figure is wall time from the start of `up` to that answer. Memory is the sum of the
proportional set size (PSS) of every process living in the lab's namespaces (etcd,
flanneld, docker) when the lab is up. Targets on a 2-core machine: 2 nodes <= 2 s,
20 nodes <= 10 s. All traffic stays between the lab's own namespaces.

    ./run bench            (all benchmarks)    python bench/bench_up.py --nodes 2 20
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from labkit.bench import lab_memory  # noqa: E402
from labkit.lab import Lab, clean  # noqa: E402
from labkit.spec import LabSpec  # noqa: E402


def one(n: int, name: str) -> dict:
    clean(name)
    t0 = time.monotonic()
    lab = Lab(LabSpec(name=name, nodes=n, containers=1))
    try:
        lab.up()
        t_up = time.monotonic() - t0
        src, dst = "master/c1", f"{lab.nodes[-1].name}/c1"
        while not lab.ping(src, dst, count=1, timeout=1)[0]:
            if time.monotonic() - t0 > 60:
                raise SystemExit(f"no ping after 60 s with {n} nodes")
        t_ping = time.monotonic() - t0
        mem = lab_memory(name)
        return {"nodes": n, "up": t_up, "first_ping": t_ping, "pss_mib": mem["total_kib"] / 1024,
                "procs": sum(mem["processes"].values()),
                "by_prog": {k: v / 1024 for k, v in sorted(mem["by_kind_kib"].items())}}
    finally:
        lab.down()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nodes", type=int, nargs="+", default=[2, 20])
    p.add_argument("--name", default="benchup")
    a = p.parse_args()
    targets = {2: 2.0, 20: 10.0}
    print(f"{'nodes':>5}  {'up (s)':>7}  {'first ping (s)':>14}  {'target':>6}  {'memory (MiB PSS)':>16}  procs")
    for n in a.nodes:
        r = one(n, a.name)
        target = targets.get(n)
        verdict = "" if target is None else (f"<= {target:g}s " + ("ok" if r["first_ping"] <= target else "MISSED"))
        print(f"{n:>5}  {r['up']:>7.2f}  {r['first_ping']:>14.2f}  {verdict:>6}  {r['pss_mib']:>16.1f}  {r['procs']}",
              flush=True)
        print("       memory by program: " + ", ".join(f"{k} {v:.1f} MiB" for k, v in r["by_prog"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
