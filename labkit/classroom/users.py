"""Learner accounts: ordinary Unix users, recognisable by a name prefix and one group.

Every learner is a member of ``flannel-learners``: that membership, not the name alone, is what
``remove`` and the trainer's view trust, so ``remove`` can never delete an account it did not
make (``root``, a colleague's). Accounts are made with the distribution's own tools
(``useradd``, ``chpasswd``, ``userdel``), each value checked first and passed as an argument,
never through a shell. A password, when made here, is printed once for the trainer to hand out.
"""
from __future__ import annotations

import grp
import os
import pwd
import re
import secrets
import signal
import subprocess
import time
from dataclasses import dataclass

from ..errors import LabError

GROUP = "flannel-learners"
DEFAULT_PREFIX = "flab"
MAX_USERS = 200
# what useradd accepts on Debian and what JupyterHub keeps unchanged (lower case, no dots)
_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
_PREFIX = re.compile(r"^[a-z][a-z0-9]{1,15}$")


@dataclass
class Learner:
    name: str
    uid: int
    home: str
    password: str | None = None  # only when made now


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise LabError(f"bad user name {name!r}: lower-case letters, digits, '-' and '_', "
                       "starting with a letter, at most 32 characters", field="users")
    return name


def check_prefix(prefix: str) -> str:
    if not _PREFIX.match(prefix):
        raise LabError(f"bad prefix {prefix!r}: 2 to 16 lower-case letters and digits, starting with a letter",
                       field="prefix")
    return prefix


def _need_root() -> None:
    if os.geteuid() != 0:
        raise LabError("managing learner accounts needs root (useradd, userdel)")


def _exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def is_learner(name: str) -> bool:
    try:
        return name in grp.getgrnam(GROUP).gr_mem
    except KeyError:
        return False


def learners(prefix: str | None = None) -> list[Learner]:
    """Every account in the learners' group (those starting with ``prefix`` when given), by name."""
    try:
        members = grp.getgrnam(GROUP).gr_mem
    except KeyError:
        return []
    out: list[Learner] = []
    for name in sorted(members):
        if prefix and not name.startswith(prefix):
            continue
        try:
            pw = pwd.getpwnam(name)
        except KeyError:
            continue
        out.append(Learner(name, pw.pw_uid, pw.pw_dir))
    return out


def names_for(n: int, prefix: str = DEFAULT_PREFIX) -> list[str]:
    """``flab01``..``flabNN``: numbered from the first free number, two digits at least."""
    check_prefix(prefix)
    if not 1 <= n <= MAX_USERS:
        raise LabError(f"number of learners must be 1 to {MAX_USERS}; found {n}", field="n")
    taken = {int(m.group(1)) for lr in learners(prefix) if (m := re.fullmatch(re.escape(prefix) + r"(\d+)", lr.name))}
    out: list[str] = []
    i = 1
    while len(out) < n:
        name = f"{prefix}{i:02d}"
        if i not in taken and not _exists(name):
            out.append(name)
        i += 1
    return out


def read_users_file(path: str) -> list[tuple[str, str | None]]:
    """One learner per line, ``name`` or ``name:password``; blank lines and ``#`` comments skipped."""
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise LabError(f"cannot read users file {path}: {e.strerror}", field="users") from e
    out: list[tuple[str, str | None]] = []
    for n, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, password = line.partition(":")
        try:
            check_name(name.strip())
        except LabError as e:
            raise LabError(f"{path}:{n}: {e}", field="users") from e
        if sep and (not password or "\n" in password or ":" in password):
            raise LabError(f"{path}:{n}: the password after ':' must be non-empty and contain no ':'", field="users")
        out.append((name.strip(), password if sep else None))
    if not out:
        raise LabError(f"{path}: no user names in it", field="users")
    return out


def _ensure_group() -> None:
    try:
        grp.getgrnam(GROUP)
    except KeyError:
        subprocess.run(["groupadd", "--system", GROUP], check=True, capture_output=True, text=True)


def add(users: list[tuple[str, str | None]]) -> list[Learner]:
    """Make each account (home directory, bash, in the learners' group) with its password (made
    when not given). An existing learner is left as it is; a name that exists and is not a
    learner is refused before anything is made."""
    _need_root()
    seen: set[str] = set()
    for name, _ in users:
        check_name(name)
        if name in seen:
            raise LabError(f"user {name} is named twice", field="users")
        seen.add(name)
        if _exists(name) and not is_learner(name):
            raise LabError(f"user {name} exists and is not a learner (not in group {GROUP}): not touched",
                           field="users")
    _ensure_group()
    made: list[Learner] = []
    try:
        for name, password in users:
            if _exists(name):
                pw = pwd.getpwnam(name)
                made.append(Learner(name, pw.pw_uid, pw.pw_dir))
                continue
            subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", "--user-group",
                            "--groups", GROUP, "--comment", "flannel-lab learner", name],
                           check=True, capture_output=True, text=True)
            password = password or secrets.token_urlsafe(9)
            subprocess.run(["chpasswd"], input=f"{name}:{password}\n", check=True, capture_output=True, text=True)
            pw = pwd.getpwnam(name)
            os.chmod(pw.pw_dir, 0o700)   # a classmate reads nothing in it (useradd's default is 0755)
            made.append(Learner(name, pw.pw_uid, pw.pw_dir, password))
    except subprocess.CalledProcessError as e:
        # never half a class: the accounts made by this call go again
        remove([lr.name for lr in made if lr.password is not None])
        raise LabError(f"{e.cmd[0]} failed: {(e.stderr or '').strip()}") from e
    return made


def _kill_user_processes(uid: int, wait: float = 5.0) -> None:
    """SIGTERM, then SIGKILL, every process of ``uid`` (found by its real uid in /proc)."""
    def pids() -> list[int]:
        out = []
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    if os.stat(f"/proc/{d}").st_uid == uid:
                        out.append(int(d))
                except OSError:
                    pass
        return out
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids():
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        deadline = time.monotonic() + wait
        while pids() and time.monotonic() < deadline:
            time.sleep(0.1)
        if not pids():
            return


def remove(names: list[str]) -> list[str]:
    """Remove learner accounts (only members of the learners' group): their processes, sandbox
    and labs go with them (a sandbox dies with its holder process), then the home directory."""
    _need_root()
    for name in names:
        check_name(name)
        if _exists(name) and not is_learner(name):
            raise LabError(f"user {name} is not a learner (not in group {GROUP}): not removed", field="users")
    removed = []
    for name in names:
        if not _exists(name):
            continue
        uid = pwd.getpwnam(name).pw_uid
        _kill_user_processes(uid)
        subprocess.run(["userdel", "--remove", name], capture_output=True, text=True)
        if _exists(name):
            raise LabError(f"userdel {name} failed")
        removed.append(name)
    try:
        if not grp.getgrnam(GROUP).gr_mem:   # the last learner gone: the group goes too
            subprocess.run(["groupdel", GROUP], capture_output=True, text=True)
    except KeyError:
        pass
    return removed
