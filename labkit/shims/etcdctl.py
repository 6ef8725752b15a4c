"""The real etcdctl, plus one hint where the blog's command meets today's etcd.

The blog (CentOS 7, flannel 0.7) writes the config with ``etcdctl set``: the etcd v2
API. etcdctl 3.4 speaks v3 unless ``ETCDCTL_API=2`` and has no ``set``; and flannel
>= 0.18 reads only v3 keys, so a v2 key would be invisible to it anyway. After the
real etcdctl has answered, we add one line saying so and what to type instead.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

HINT = ("labkit: etcdctl 3.4 uses the etcd v3 API by default, which has no `set`. flannel >= 0.18 reads "
        "its config from v3 keys: use `etcdctl put {key} '<json>'` instead. (`ETCDCTL_API=2 etcdctl set` "
        "would write a v2 key, which a v3 flanneld never sees.)")


def real_etcdctl() -> str:
    shims = os.path.dirname(os.path.abspath(__file__))
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep)
                           if os.path.abspath(p) != os.path.join(shims, "bin"))
    found = shutil.which("etcdctl", path=path)
    if not found:
        print("etcdctl: not installed (apt-get install etcd-client)", file=sys.stderr)
        sys.exit(127)
    return found


def main(argv: list[str]) -> int:
    rc = subprocess.call([real_etcdctl(), *argv])
    words = [a for a in argv if not a.startswith("-")]
    if rc != 0 and words[:1] == ["set"] and os.environ.get("ETCDCTL_API", "3") == "3":
        key = words[1] if len(words) > 1 else "KEY"
        print(HINT.format(key=key), file=sys.stderr)
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
