"""flanneld's iptables resync (labkit/flannel/trafficmngr.py): one `iptables -S` per table
finds every rule flannel adds, as `-C` would, so a resync needs no `-C`; a deleted rule is
missed. In a network namespace of a thread's own, which goes with the thread."""
import subprocess

from labkit.flannel import trafficmngr as T

from .test_peer_netlink import _in_scratch_netns, pytestmark  # noqa: F401 - root only


def test_listing_finds_every_rule_and_misses_a_deleted_one(monkeypatch):
    checks = []
    real = T._iptables

    def counting(*args):
        if "-C" in args:
            checks.append(args)
        return real(*args)
    monkeypatch.setattr(T, "_iptables", counting)

    def work(nspath):
        sets = [T.RuleSet("forward", T.forward_rules("10.108.0.0/16")),
                T.RuleSet("masq", T.masq_rules("10.108.0.0/16", "10.108.5.0/24"))]
        for rs in sets:
            rs.bootstrap()
        found = [rs.exist() for rs in sets]
        asked = len(checks)
        subprocess.run(["iptables", "-w", "-D", "FLANNEL-FWD", "-d", "10.108.0.0/16", "-m", "comment",
                        "--comment", "flanneld forward", "-j", "ACCEPT"], check=True)
        return found, asked, sets[0].exist()

    found, asked, after_delete = _in_scratch_netns(work)
    assert found == [True, True]
    assert asked == 0                      # every rule was in the listing: no -C at all
    assert after_delete is False
