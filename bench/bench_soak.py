#!/usr/bin/env python3
"""Soak: many cycles of up / check / random faults / check / down, counting what survives and what leaks.

Each cycle builds a 2-node lab with one container per node (6 s lease TTL, so renewals
run during the cycle), checks every container pair answers, injects 1 or 2 random faults,
each followed by its recovery and the all-pairs check again, then removes the lab and
looks for anything left of it: namespaces with its prefix, its state folder or lock file,
a mount (etcd's tmpfs), a process started for it. Faults:

  etcd-restart    `systemctl restart etcd` on the master (flanneld's watch and renewal must carry on)
  flanneld-kill9  SIGKILL of a node's flanneld, then `systemctl start flanneld` (same subnet)
  docker-restart  `systemctl restart docker` on a node, then `docker start` of its container
  link-down-up    a node's eth0 down for 0.5 s, then up

A fault "survives" when, after its recovery, every pair answers within 15 s and every
lease is the one from before. Bounded in time (--max-minutes: stops after the cycle that
crosses it). Traffic only flows between the lab's own namespaces.

    python bench/bench_soak.py --cycles 200        ./run bench (all benchmarks)
"""
import argparse
import collections
import os
import random
import signal
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from labkit.lab import Lab, clean  # noqa: E402
from labkit.spec import LabSpec  # noqa: E402
from labkit.state import leftovers  # noqa: E402

FAULTS = ("etcd-restart", "flanneld-kill9", "docker-restart", "link-down-up")


def all_pairs(lab: Lab, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if all(lab.connectivity().values()):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)


def leases(lab: Lab) -> dict:
    return {v: sn for sn, (_, v) in lab.leases().items()}


def inject(lab: Lab, fault: str, rng: random.Random) -> None:
    node = rng.choice([n.name for n in lab.nodes])
    if fault == "etcd-restart":
        r = lab.sh("master", "systemctl restart etcd")
    elif fault == "flanneld-kill9":
        svc = lab.service(node, "flanneld")
        os.kill(svc.pid(), signal.SIGKILL)
        while svc.is_active():
            time.sleep(0.02)
        r = lab.sh(node, "systemctl start flanneld")
    elif fault == "docker-restart":
        from labkit.docker import containers
        r = lab.sh(node, "systemctl restart docker")
        if r.returncode == 0:
            containers.start(lab.state, node, "c1")
    else:
        lab.sh(node, "ip link set eth0 down")
        time.sleep(0.5)
        r = lab.sh(node, "ip link set eth0 up")
    if r.returncode != 0:
        raise RuntimeError(f"{fault} on {node}: {r.stderr.strip()}")


def cycle(name: str, rng: random.Random, stats: dict) -> None:
    lab = Lab(LabSpec(name=name, nodes=2, containers=1, lease_ttl=6, renew_margin=3))
    try:
        lab.up()
        if not all_pairs(lab):
            stats["failures"].append("check after up")
            return
        before = leases(lab)
        for fault in rng.sample(FAULTS, rng.choice((1, 2))):
            stats["injected"][fault] += 1
            try:
                inject(lab, fault, rng)
                why = None if all_pairs(lab) else "not every pair answers"
                why = why or (None if leases(lab) == before else "a lease changed")
            except Exception as e:  # a fault the lab did not survive is a figure, not a crash
                why = str(e)
            if why is None:
                stats["survived"][fault] += 1
            else:
                stats["failures"].append(f"{fault}: {why}")
    except Exception as e:
        stats["failures"].append(f"cycle: {e}")
    finally:
        lab.down()
        for kind, items in leftovers(name).items():
            if items:
                stats["leaks"][kind] += len(items)
                clean(name)  # do not carry a leak into the next cycle


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cycles", type=int, default=200)
    p.add_argument("--max-minutes", type=float, default=30.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--name", default="soak")
    a, _ = p.parse_known_args()  # ./run bench hands every benchmark the same arguments
    rng = random.Random(a.seed)
    stats = {"injected": collections.Counter(), "survived": collections.Counter(),
             "leaks": collections.Counter(), "failures": []}
    clean(a.name)
    t0, times, done = time.monotonic(), [], 0
    for i in range(a.cycles):
        t = time.monotonic()
        cycle(a.name, rng, stats)
        times.append(time.monotonic() - t)
        done += 1
        if (i + 1) % 10 == 0 or i + 1 == a.cycles:
            print(f"  cycle {i + 1}/{a.cycles}: {sum(stats['survived'].values())}/"
                  f"{sum(stats['injected'].values())} faults survived, "
                  f"{sum(stats['leaks'].values())} leaks", flush=True)
        if time.monotonic() - t0 > a.max_minutes * 60:
            print(f"  stopped after {done} cycles: past --max-minutes {a.max_minutes:g}")
            break
    total = time.monotonic() - t0
    print(f"cycles {done}  wall {total:.0f} s  per cycle median {statistics.median(times):.1f} s, "
          f"max {max(times):.1f} s  (seed {a.seed})")
    print(f"{'fault':<16}{'injected':>9}{'survived':>9}")
    for f in FAULTS:
        print(f"{f:<16}{stats['injected'][f]:>9}{stats['survived'][f]:>9}")
    print("leaks: " + ", ".join(f"{k} {stats['leaks'][k]}" for k in
                                ("netns", "state", "lock", "mounts", "processes")))
    for f in stats["failures"][:20]:
        print(f"  failure: {f}")
    return 0 if not stats["failures"] and not sum(stats["leaks"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
