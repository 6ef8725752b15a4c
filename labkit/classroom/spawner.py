"""The class hub's spawner: a learner's Jupyter server, as the learner, inside their sandbox.

It is JupyterHub's LocalProcessSpawner (a process per learner, started by the root hub with the
learner's uid) with three additions:

1. the command is ``labkit sandbox run --publish hub -- jupyterhub-singleuser ...``: the server
   starts inside the learner's own user, mount and network namespaces (their private
   ``/run/netns`` and ``/run/labkit``), so every kernel and terminal it starts is already there,
   and every lab the learner builds is invisible to the others; ``--publish hub`` relays the
   server's port out to the hub and ``--connect hub`` relays the hub's API in;
2. before dropping to the learner's uid, the child puts itself into the learner's cgroup
   (``limits``): server, kernels and labs share one memory and process limit;
3. on first start the course (``notebooks/``) is copied into ``~/flannel-lab`` *as the learner*,
   and when the server stops (by the learner, the trainer or the idle culler) the learner's
   sandbox is stopped too, so a culled learner's labs stop using memory.
"""
from __future__ import annotations

import os
import pwd
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from jupyterhub.spawner import LocalProcessSpawner
from traitlets import Bool, Integer, List, Unicode, default

from . import limits

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COURSE = "flannel-lab"   # the learner's copy of notebooks/, in their home


def labkit_cmd(*args: str) -> list[str]:
    """``labkit ARGS`` with this interpreter and this clone's labkit (PYTHONPATH is set in env)."""
    return [sys.executable, "-m", "labkit", *args]


class SandboxSpawner(LocalProcessSpawner):
    sandbox = Bool(True, config=True, help="start the server inside the learner's labkit sandbox")
    tasks_limit = Integer(1024, config=True, help="processes and threads per learner (pids.max)")
    course_dir = Unicode(os.path.join(ROOT, "notebooks"), config=True, help="copied to ~/flannel-lab on first start")

    server_cmd = List(Unicode(), [sys.executable, "-m", "jupyterhub.singleuser"], config=True,
                      help="the single-user server, run inside the sandbox")

    def sandboxed(self, server: list[str]) -> list[str]:
        """``labkit sandbox run --publish hub --connect hub -- SERVER``: the server's port relayed
        out to the hub, the hub's API relayed in; one pid all along (sandbox run execs)."""
        return labkit_cmd("sandbox", "run", "--publish", "hub", "--connect", "hub", "--", *server)

    @default("notebook_dir")
    def _notebook_dir_default(self) -> str:
        return f"~/{COURSE}"

    @default("default_url")
    def _default_url_default(self) -> str:
        return "/lab"

    _procs_files: list[str] = []

    def get_args(self) -> list[str]:
        args: list[str] = super().get_args()
        if self.sandbox:
            # inside the sandbox the learner is uid 0 of their own user namespace (no power
            # outside it); Jupyter would refuse "root" without this
            args.append("--ServerApp.allow_root=True")
        return args

    def get_env(self) -> dict[str, str]:
        env: dict[str, str] = super().get_env()
        env["PYTHONPATH"] = ROOT
        env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), "/usr/local/sbin", "/usr/local/bin",
                                       "/usr/sbin", "/usr/bin", "/sbin", "/bin"])
        env.pop("LABKIT_NOTEBOOK_SUFFIX", None)   # a learner's progress is recorded
        return env

    def make_preexec_fn(self, name: str) -> Callable[[], None]:
        drop = super().make_preexec_fn(name)
        procs = list(self._procs_files)

        def preexec() -> None:
            limits.join(procs)   # still root: into the learner's cgroup, then the learner's uid
            drop()
        return preexec

    def _as_learner(self, cmd: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
        pw = pwd.getpwnam(self.user.name)
        return subprocess.run(cmd, user=pw.pw_uid, group=pw.pw_gid, extra_groups=[], cwd=pw.pw_dir,
                              env={**self.get_env(), "HOME": pw.pw_dir, "USER": self.user.name},
                              capture_output=True, text=True, timeout=timeout, check=False)

    async def start(self) -> Any:
        lim = limits.Limits(memory=int(self.mem_limit) if self.mem_limit else None,
                            tasks=self.tasks_limit or None, cpus=float(self.cpu_limit) if self.cpu_limit else None)
        try:
            self._procs_files = limits.prepare(self.user.name, lim)
        except OSError as e:
            self.log.warning("no resource limits for %s: %s", self.user.name, e)
            self._procs_files = []
        home = pwd.getpwnam(self.user.name).pw_dir
        if os.path.isdir(self.course_dir) and not os.path.lexists(os.path.join(home, COURSE)):
            r = self._as_learner(["cp", "-r", "-n", "-T", self.course_dir, os.path.join(home, COURSE)])
            if r.returncode:
                self.log.warning("copying the course for %s: %s", self.user.name, r.stderr.strip())
        self.cmd = self.sandboxed(list(self.server_cmd)) if self.sandbox else list(self.server_cmd)
        return await super().start()

    async def stop(self, now: bool = False) -> None:
        await super().stop(now=now)
        if self.sandbox:
            r = self._as_learner(labkit_cmd("sandbox", "stop"))
            if r.returncode:
                self.log.warning("labkit sandbox stop for %s: %s", self.user.name, (r.stderr or r.stdout).strip())
        limits.release(self.user.name)
