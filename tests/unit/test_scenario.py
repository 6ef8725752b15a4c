"""Scenario files (schema, loading, safety), the check judges on canned output, the progress
store and the challenge widget's text form: no lab needed."""
import json
import textwrap

import pytest

from labkit.scenario import checks as ck
from labkit.scenario import model
from labkit.scenario.model import ScenarioError, parse
from labkit.scenario.progress import Progress

GOOD = textwrap.dedent("""\
    name: tiny
    title: A tiny scenario
    summary: Make it work.
    tags: {topic: test, difficulty: easy}
    minutes: 5
    lab: {nodes: 2, containers: 1}
    fault:
      - {on: node1, run: "iptables -I INPUT -p udp --dport 8472 -j DROP"}
    checks:
      - {id: all-pairs, kind: connectivity, role: outcome, expect: ok}
      - {id: fwd, kind: sysctl, role: diagnostic, node: all, key: net.ipv4.ip_forward, expect: 1, hint_ref: 1}
    hints: [look, what, fix]
    solution:
      - {on: node1, run: "iptables -D INPUT -p udp --dport 8472 -j DROP"}
    explanation: because
    references: [https://github.com/flannel-io/flannel/issues/423]
""")


def problems(text):
    with pytest.raises(ScenarioError) as e:
        parse(text, "t.yaml")
    return e.value.problems


def test_every_shipped_scenario_loads():
    found, bad = model.load_all()
    assert not bad, "\n".join(map(str, bad))
    assert len(found) >= 8
    for sc in found:
        assert sc.outcome_checks and sc.references and len(sc.hints) >= 2
        sc.spec("scx")  # a valid LabSpec


def test_a_good_file_parses_and_on_is_a_key_not_true():
    sc = parse(GOOD, "<test>")
    assert sc.fault == [{"on": "node1", "run": "iptables -I INPUT -p udp --dport 8472 -j DROP"}]
    assert [c["id"] for c in sc.outcome_checks] == ["all-pairs"]


@pytest.mark.parametrize("old,new,line", [
    ("expect: ok}", "expect: okay}", "checks[0].expect: expected one of 'ok', 'fail'; found 'okay'"),
    ("minutes: 5", "minutes: five", "minutes: expected a whole number; found text 'five'"),
    ("kind: connectivity", "kind: pingg", "checks[0].kind: expected one of"),
    ("{on: node1, run:", "{on: node7, run:", "fault[0].on: expected a node of this lab (master, node1); found 'node7'"),
    ("{on: node1, run:", "{on: 'node1; rm', run:", "fault[0].on: expected text matching"),
    ("lab: {nodes: 2, containers: 1}", "lab: {nodes: 2, node_mtu: {node9: 1400}}",
     "lab.node_mtu: expected a valid lab"),
    ("lab: {nodes: 2, containers: 1}", "lab: {nodez: 2}", "lab.nodez: expected a LabSpec field"),
    ("title: A tiny scenario\n", "", "title: expected a value (required); found nothing"),
    ("hint_ref: 1}", "hint_ref: 9}", "checks[1].hint_ref: expected a hint tier 1..3; found 9"),
    ("key: net.ipv4.ip_forward", "key: /etc/passwd", "checks[1].key: expected text matching"),
    ("role: outcome", "role: diagnostic", "checks: expected at least one check with role: outcome"),
    ("minutes: 5", "minutes: 5\ncolour: red", "colour: expected one of the known fields"),
])
def test_a_broken_file_names_the_field_what_was_expected_and_found(old, new, line):
    assert old in GOOD
    got = problems(GOOD.replace(old, new, 1))
    assert any(p.startswith(line) for p in got), got


def test_every_error_is_one_line_with_the_file_name():
    bad = GOOD.replace("expect: ok}", "expect: okay}").replace("minutes: 5", "minutes: -1")
    with pytest.raises(ScenarioError) as e:
        parse(bad, "scenarios/t.yaml")
    lines = str(e.value).splitlines()
    assert len(lines) == 2 and all(ln.startswith("scenarios/t.yaml: ") for ln in lines)
    assert "minutes: expected a number >= 1; found -1" in lines[1] or "minutes: expected a number >= 1" in lines[0]


def test_kind_specific_fields():
    got = problems(GOOD.replace("{id: all-pairs, kind: connectivity, role: outcome, expect: ok}",
                                "{id: p, kind: ping, role: outcome, expect: ok, to: node1, device: eth0}"))
    assert "checks[0].from: expected a value (required); found nothing" in got
    assert any(p.startswith("checks[0].device: expected only fields of this kind") for p in got), got


@pytest.mark.parametrize("run,word", [
    ("cat /etc/shadow", "'/etc/shadow'"),
    ("labkit down --name other", "'labkit'"),
    ("rm -rf /", "'/'"),
    ("ip netns exec other-node1 true", "'ip netns'"),
    ("echo x > /root/.bashrc", "'/root/.bashrc'"),
])
def test_a_scenario_cannot_reach_the_host(run, word):
    got = problems(GOOD.replace('run: "iptables -I INPUT -p udp --dport 8472 -j DROP"', f'run: "{run}"'))
    assert any(p.startswith("fault[0].run: expected") and word in p for p in got), got


def test_node_paths_and_etcd_keys_are_allowed():
    ok = GOOD.replace('run: "iptables -I INPUT -p udp --dport 8472 -j DROP"',
                      "run: \"sed -i 's|^X=.*|X=1|' /etc/sysconfig/flanneld; cat /run/flannel/subnet.env; "
                      "etcdctl get /coreos.com/network/config; echo 10.108.0.0/16\"")
    parse(ok, "<test>")


def test_yaml_syntax_error_is_one_line():
    got = problems("name: [unclosed\n")
    assert len(got) == 1 and got[0].startswith("(file): expected YAML; found a syntax error at line")


def test_the_file_name_is_the_scenario_name(tmp_path):
    p = tmp_path / "other.yaml"
    p.write_text(GOOD)
    with pytest.raises(ScenarioError, match="name: expected the file's name"):
        model.load(str(p))


# -- judges on canned output ------------------------------------------------------------------------
def test_judge_ping():
    v = ck.judge_ping("ok", 1, "PING ...\nFrom 10.108.5.0 icmp_seq=1 Frag needed and DF set (mtu = 1350)\n", "a -> b")
    assert not v.ok and "Frag needed" in v.found
    assert ck.judge_ping("fail", 1, "2 packets transmitted, 0 received", "a -> b").ok
    assert ck.judge_ping("ok", 0, "2 received", "a -> b").ok


def test_judge_connectivity():
    v = ck.judge_connectivity("ok", {("a", "b"): True, ("b", "a"): False})
    assert not v.ok and v.found == "1 of 2 pairs answer; failing: b->a"
    assert ck.judge_connectivity("ok", {("a", "b"): True}).ok
    assert not ck.judge_connectivity("ok", {}).ok


LINK = ("7: flannel.1: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1450 qdisc noqueue state UNKNOWN\n"
        "7: flannel.1    inet 10.108.43.0/32 scope global flannel.1\n")


def test_parse_and_judge_link():
    info = ck.parse_link(LINK)
    assert info == {"mtu": 1450, "state": "UP", "addresses": ["10.108.43.0/32"]}
    assert ck.judge_link({"mtu": 1450, "address": r"^10\.108\."}, info, "flannel.1").ok
    v = ck.judge_link({"mtu": 1400}, info, "flannel.1")
    assert not v.ok and "mtu 1450" in v.found
    assert ck.judge_link({"exists": False}, None, "flannel.1").ok
    assert not ck.judge_link({"exists": True}, None, "flannel.1").ok
    assert ck.parse_link('Device "flannel.1" does not exist.') is None


ROUTES = ("10.108.0.0/16 dev flannel.1\n10.108.7.0/24 via 10.108.7.0 dev flannel.1 onlink\n"
          "default via 192.168.50.254 dev eth0\n")


def test_judge_route():
    assert ck.judge_route("present", ROUTES, "10.108.7.0/24", dev="flannel.1").ok
    assert not ck.judge_route("present", ROUTES, "10.108.7.0/24", dev="eth0").ok
    assert ck.judge_route("present", ROUTES, "default", via="192.168.50.254").ok
    assert ck.judge_route("absent", ROUTES, "10.108.9.0/24").ok


def test_judge_entries_iptables_sysctl_values_logs_commands():
    fdb = "72:2a:a9:5f:5b:ce dst 192.168.50.2 self permanent\n"
    assert ck.judge_entry("present", fdb, ["72:2A:a9:5f:5b:ce", "dst 192.168.50.2 "], "fdb").ok
    assert not ck.judge_entry("present", fdb, ["72:2a:a9:5f:5b:ce", "dst 192.168.50.3 "], "fdb").ok
    rules = "-P INPUT ACCEPT\n-P FORWARD DROP\n-A INPUT -p udp -m udp --dport 8472 -j DROP\n"
    assert not ck.judge_iptables({"rule": "--dport 8472 .*DROP", "expect": "absent"}, rules).ok
    assert ck.judge_iptables({"chain": "FORWARD", "policy": "DROP", "expect": "present"}, rules).ok
    assert ck.judge_sysctl(1, "1\n", "net.ipv4.ip_forward").ok
    assert not ck.judge_sysctl("1", "0\n", "net.ipv4.ip_forward").ok
    lease = json.dumps({"PublicIP": "192.168.50.2", "BackendData": {"VtepMAC": "aa"}})
    assert ck.judge_value("exists", lease, "lease", "BackendData.VtepMAC", "aa").ok
    assert not ck.judge_value("exists", lease, "lease", "BackendData.VNI", 1).ok
    assert ck.judge_value("absent", None, "lease").ok
    assert not ck.judge_value("exists", None, "lease").ok
    v = ck.judge_log("absent", "I0 ok\nE1 Lease has been revoked. Shutting down daemon.\n", "revoked", "log")
    assert not v.ok and "revoked" in v.found
    assert ck.judge_command({"exit": 0, "regex": r"^10\.108\."}, 0, "10.108.3.2\n").ok
    v = ck.judge_command({"exit": 0, "contains": "x"}, 1, "")
    assert not v.ok and v.found == "exit 1, no output"


def test_default_show_says_where_to_look():
    assert ck.default_show({"kind": "fdb", "node": "master"}) == "master$ bridge fdb show dev flannel.1"
    assert ck.default_show({"kind": "service", "node": "all", "service": "flanneld"}) == \
        "NODE$ systemctl status flanneld"


# -- progress ----------------------------------------------------------------------------------------
def test_progress_store_lives_in_xdg_state_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    p = Progress()
    assert p.path == str(tmp_path / "labkit" / "progress.json")
    p.started("mtu", "sc1", now=100.0)
    p.hinted("mtu", 1)
    p.hinted("mtu", 2)
    p.checked("mtu", solved=False, now=110.0)
    p.checked("mtu", solved=True, now=160.0)
    p.checked("mtu", solved=True, now=170.0)   # solved once: the first time stays
    e = Progress().get("mtu")   # a new reader: it is on disk
    assert e["attempts"] == 1 and e["hints_used"] == 2 and e["checks_run"] == 3
    assert e["solved_at"] == 160.0 and e["seconds_to_solve"] == 60.0
    p.started("mtu", "sc1", now=200.0)
    assert Progress().get("mtu")["attempts"] == 2 and Progress().get("mtu")["hints_this_attempt"] == 0


def test_progress_survives_a_broken_file(tmp_path):
    path = tmp_path / "progress.json"
    path.write_text("{not json")
    p = Progress(str(path))
    assert p.get("x") == {}
    p.started("x", "sc1")
    assert p.get("x")["attempts"] == 1


# -- the widget --------------------------------------------------------------------------------------
def test_widget_text_is_the_unsolved_task(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    from labkit.notebook.challenge import ChallengeWidget
    from labkit.scenario.engine import Challenge
    w = ChallengeWidget(Challenge("mtu-black-hole", name="scnolab"))
    text = w._repr_mimebundle_()["text/plain"]
    assert text.startswith("Small pings pass, big packets bounce  (mtu-black-hole, ~20 min)")
    assert "  [ ] full-size-master-to-node1: the largest DF packet" in text
    assert "✓" not in text and "Hint" not in text
    assert w.tick() == "(not started)"
    w.ask_solution()
    assert w.ask.layout.display == "flex" and w.solution.value == ""
    w._hide_ask()
    assert w.ask.layout.display == "none"
