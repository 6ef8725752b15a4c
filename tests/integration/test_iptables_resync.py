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


def _save(table):
    out = subprocess.run(["iptables", "-w", "-t", table, "-S"], capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if "FLANNEL" in line or "flanneld" in line]


def test_restore_bootstrap_puts_the_same_rules_as_commands_in_two_processes(monkeypatch):
    """v0.19.0+ (iptables_bootstrap=restore): one listing and one iptables-restore per table
    give the rules the per-command way gives, in the same order; a second bootstrap (the
    resync after a rule went missing) leaves no duplicate, and a rule someone put between
    flannel's ends up before them, as flannel's -D/-A transaction leaves it."""
    runs = []
    real_run = subprocess.run

    def counting(cmd, *a, **kw):
        if cmd and str(cmd[0]).startswith("iptables"):
            runs.append(cmd[0] + " " + " ".join(c for c in cmd[1:] if c.startswith("-") and c != "-w"))
        return real_run(cmd, *a, **kw)
    monkeypatch.setattr(T.subprocess, "run", counting)
    rules = T.forward_rules("10.108.0.0/16") + T.masq_rules("10.108.0.0/16", "10.108.5.0/24")

    def work(nspath):
        T.RuleSet("all", rules, "commands").bootstrap()
        by_commands = _save("filter") + _save("nat")
        for table in ("filter", "nat"):
            real_run(["iptables", "-w", "-t", table, "-F"], check=True)
            real_run(["iptables", "-w", "-t", table, "-X"], check=True)
        runs.clear()
        T.RuleSet("all", rules, "restore").bootstrap()
        first = list(runs)
        by_restore = _save("filter") + _save("nat")
        real_run(["iptables", "-w", "-I", "FLANNEL-FWD", "2", "-s", "192.0.2.0/24", "-j", "ACCEPT"], check=True)
        real_run(["iptables", "-w", "-D", "FLANNEL-FWD", "-d", "10.108.0.0/16", "-m", "comment",
                  "--comment", "flanneld forward", "-j", "ACCEPT"], check=True)
        T.RuleSet("all", rules, "restore").ensure()
        return by_commands, first, by_restore, _save("filter"), _save("nat")

    by_commands, first, by_restore, filter_after, nat_after = _in_scratch_netns(work)
    assert by_restore == by_commands and len(by_restore) == 12   # 2 chains + 10 rules
    assert first == ["iptables -t -S", "iptables -t -S", "iptables-restore --noflush --wait"]
    foreign = "-A FLANNEL-FWD -s 192.0.2.0/24 -j ACCEPT"
    assert filter_after == by_restore[:2] + [foreign] + by_restore[2:4]  # no duplicate
    assert nat_after == by_restore[4:]


def test_restore_bootstrap_failure_is_flannels_message(monkeypatch):
    monkeypatch.setattr(T, "_listing", lambda table: set())
    monkeypatch.setattr(T, "_iptables", lambda *a: 1)

    def work(nspath):
        try:  # a rule iptables-restore refuses: an unknown target
            T.RuleSet("bad", [("filter", "FORWARD", ["-j", "NO-SUCH-TARGET"])], "restore").bootstrap()
        except RuntimeError as e:
            return str(e)
        return "no error"
    said = _in_scratch_netns(work)
    assert said.startswith("failed to apply partial iptables-restore unable to run iptables-restore (")


def test_missing_iptables_restore_is_flannels_message_and_adds_nothing(monkeypatch, capsys):
    """v0.19.0+ needs iptables-restore too: without it flanneld says so, as flannel does
    ("Failed to setup IPTables. iptables-restore binary was not found"), and runs no
    iptables command at all; the older per-command way needs only iptables."""
    import shutil
    ran = []
    def fake_run(cmd, *a, **kw):
        ran.append(cmd)
        return subprocess.CompletedProcess(cmd, 1, "", "")   # every -D finds nothing to delete
    monkeypatch.setattr(T.subprocess, "run", fake_run)
    monkeypatch.setattr(T.RuleSet, "keep", lambda self, resync: None)
    monkeypatch.setattr(shutil, "which", lambda tool: None if tool == "iptables-restore" else f"/usr/sbin/{tool}")
    T.setup("10.108.0.0/16", "10.108.5.0/24", True, False, 5, bootstrap_style="restore")
    err = capsys.readouterr().err
    assert 'Failed to setup IPTables. iptables-restore binary was not found: exec: "iptables-restore": ' \
           "executable file not found in $PATH" in err
    assert ran == []
    T.setup("10.108.0.0/16", "10.108.5.0/24", True, False, 5, bootstrap_style="commands")
    assert ran and all(cmd[0] == "iptables" for cmd in ran)
