"""dockerd's rules in one iptables-restore (labkit/docker/iptables.py `apply`) end exactly as
the command-by-command path (`apply_each`) leaves them: first start, restart with another
docker0 subnet (old MASQUERADE removed, nothing doubled), every profile. In network
namespaces of a thread's own, which go with the thread."""
import ipaddress

import pytest

from labkit.docker import iptables

from .test_peer_netlink import _in_scratch_netns, pytestmark  # noqa: F401 - root only


def _rules(nspath):
    import subprocess
    out = subprocess.run(["iptables-save"], capture_output=True, text=True, check=True).stdout
    return [line.split(" [")[0] for line in out.splitlines() if not line.startswith("#")]


@pytest.mark.parametrize("profile", ["1.12", "1.13", "24.0"])
def test_one_restore_leaves_the_same_rules_as_one_command_each(profile, monkeypatch):
    first, second = ipaddress.IPv4Interface("10.108.5.1/24"), ipaddress.IPv4Interface("10.108.9.1/24")

    def run(fn):
        def work(nspath):
            # flanneld's FORWARD rule is there first, as on a node (docker inserts above it)
            import subprocess
            subprocess.run(["iptables", "-w", "-A", "FORWARD", "-s", "10.108.0.0/16", "-j", "ACCEPT"], check=True)
            logs = [fn(profile, first, True, False), fn(profile, first, True, True),
                    fn(profile, second, True, True)]
            return _rules(nspath), logs
        return _in_scratch_netns(work)

    each, each_logs = run(iptables.apply_each)

    def no_fallback(*a):
        raise AssertionError("iptables-restore failed: apply fell back to one command each")
    real_each = iptables.apply_each
    monkeypatch.setattr(iptables, "apply_each", no_fallback)
    batched, batched_logs = run(iptables.apply)
    monkeypatch.setattr(iptables, "apply_each", real_each)
    assert batched == each
    assert batched_logs == each_logs
    text = "\n".join(batched)
    assert "-A POSTROUTING -s 10.108.9.0/24 ! -o docker0 -j MASQUERADE" in text
    assert "10.108.5.0/24" not in text
    assert text.count("-j DOCKER\n") + text.count("-j DOCKER ") >= 1
    assert sum(line.startswith("-A FORWARD") for line in batched) == sum(
        line.startswith("-A FORWARD") for line in set(batched))
