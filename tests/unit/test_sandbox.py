"""Rootless sandbox: the pure parts (labkit/sandbox.py, the udp/TUN check, the tcpdump filter).
The real thing, as ordinary users, is tests/integration/test_rootless.py."""
from __future__ import annotations

import os
import struct

import pytest

from labkit import sandbox
from labkit.flannel.backends import catalogue
from labkit.flannel.backends.kernel import tun_reason
from labkit.shims.tcpdump import filter_program


def test_blocker_reason_names_the_setting_and_the_command() -> None:
    off = {"kernel.unprivileged_userns_clone": "0", "kernel.apparmor_restrict_unprivileged_userns": None,
           "user.max_user_namespaces": "1000"}
    why = sandbox.blocker_reason(1, off)
    assert "kernel.unprivileged_userns_clone=0" in why and "sysctl -w kernel.unprivileged_userns_clone=1" in why
    ubuntu = {"kernel.unprivileged_userns_clone": None, "kernel.apparmor_restrict_unprivileged_userns": "1",
              "user.max_user_namespaces": "1000"}
    why = sandbox.blocker_reason(13, ubuntu)
    assert "AppArmor" in why and "sysctl -w kernel.apparmor_restrict_unprivileged_userns=0" in why
    zero = {"kernel.unprivileged_userns_clone": None, "kernel.apparmor_restrict_unprivileged_userns": None,
            "user.max_user_namespaces": "0"}
    assert "sysctl -w user.max_user_namespaces=15000" in sandbox.blocker_reason(28, zero)
    other = {k: None for k in zero}
    why = sandbox.blocker_reason(1, other)
    assert "seccomp" in why and "Operation not permitted" in why


def test_runtime_dir_refuses_what_is_not_private(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    mine = tmp_path / "rt"
    monkeypatch.setenv("LABKIT_RUNTIME_DIR", str(mine))
    assert sandbox.runtime_dir() == str(mine) and (os.stat(mine).st_mode & 0o777) == 0o700
    os.chmod(mine, 0o755)  # open to others: someone could plant a socket
    with pytest.raises(sandbox.SandboxError, match="mode 0700"):
        sandbox.runtime_dir()
    link = tmp_path / "link"
    os.chmod(mine, 0o700)
    link.symlink_to(mine)
    monkeypatch.setenv("LABKIT_RUNTIME_DIR", str(link))
    with pytest.raises(sandbox.SandboxError):
        sandbox.runtime_dir()


def test_xdg_runtime_dir_is_used_only_when_private(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("LABKIT_RUNTIME_DIR", raising=False)
    xdg = tmp_path / "xdg"
    xdg.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(xdg))
    assert sandbox.runtime_dir() == str(xdg / "labkit")
    os.chmod(xdg, 0o777)
    assert sandbox.runtime_dir() == f"/tmp/labkit-{os.getuid()}"


def test_root_has_no_sandbox_unless_asked(monkeypatch) -> None:
    monkeypatch.delenv("LABKIT_SANDBOX", raising=False)
    assert not sandbox.inside()  # the test process runs on the host
    assert sandbox.wanted() == (os.geteuid() != 0)
    monkeypatch.setenv("LABKIT_SANDBOX", "1")
    assert sandbox.wanted()


def test_tun_reason_and_the_catalogue(tmp_path, monkeypatch) -> None:
    closed = tmp_path / "tun"
    closed.write_text("")
    os.chmod(closed, 0)
    if os.geteuid() != 0:
        assert "cannot be opened by this user" in tun_reason(str(closed))
    assert "not usable" in tun_reason(str(tmp_path / "missing"))
    assert catalogue.CATALOGUE["udp"].needs_tun and not catalogue.CATALOGUE["vxlan"].needs_tun
    monkeypatch.setattr(catalogue, "tun_reason", lambda: "/dev/net/tun cannot be opened by this user")
    assert catalogue.kernel_reason("udp") == "udp cannot run here: /dev/net/tun cannot be opened by this user"
    assert catalogue.unavailable_reason("udp").startswith("udp cannot run here")
    assert [c.usable for c in catalogue.backend_choices() if c.name == "udp"] == [False]


def test_tcpdump_filter_fakes_only_setgroups() -> None:
    prog = filter_program(0xC000003E, 116)
    insns = [struct.unpack("HBBI", prog[i:i + 8]) for i in range(0, len(prog), 8)]
    assert insns[1][3] == 0xC000003E and insns[3][3] == 116
    assert insns[4] == (0x06, 0, 0, 0x00050000)  # SECCOMP_RET_ERRNO with errno 0: "success"
    assert insns[-1] == (0x06, 0, 0, 0x7FFF0000)  # everything else runs
    # the jumps land where they should: another arch -> allow; another syscall -> allow
    assert 1 + 1 + insns[1][2] == len(insns) - 1 and 3 + 1 + insns[3][2] == len(insns) - 1


def test_sandbox_run_ports(monkeypatch) -> None:
    from labkit.cli import build_parser
    monkeypatch.setenv("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:41234/user/a/")
    monkeypatch.setenv("JUPYTERHUB_API_URL", "http://127.0.0.1:8081/hub/api")
    a = build_parser().parse_args(["sandbox", "run", "--publish", "hub", "--connect", "hub", "--publish", "8888",
                                   "--", "jupyterhub-singleuser"])
    assert (a.publish, a.connect, a.command) == ([41234, 8888], [8081], ["--", "jupyterhub-singleuser"])
    for bad in (["--publish", "80"], ["--publish", "x"], ["--connect", "70000"]):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["sandbox", "run", *bad, "--", "true"])
    monkeypatch.setenv("JUPYTERHUB_API_URL", "http://10.1.2.3:8081/hub/api")  # a relay reaches 127.0.0.1 only
    with pytest.raises(SystemExit):
        build_parser().parse_args(["sandbox", "run", "--connect", "hub", "--", "true"])
