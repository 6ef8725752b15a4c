"""The notebook layer (labkit.notebook): the form's logic, the tables, the widgets with a
fake lab, the session's owner check, and Lab.plan (which needs no running lab)."""
import ast
import dataclasses
import json
import os
import pathlib
import subprocess
import sys
import types

import pytest

from labkit.errors import LabError
from labkit.notebook import panels, tables
from labkit.spec import SUPPORTED_BACKENDS, LabSpec
from labkit.status import ContainerStatus, LabStatus, NodeStatus, docker0_in_range
from tests.helpers import make_state

SPEC = LabSpec(name="nbt", nodes=2, seed=1)
FORM = dict(network="10.108.0.0/16", subnet_len=None, backend="vxlan", vni=1, port=0,
            direct_routing=False, nodes=2)


def form(**kw):
    return {**FORM, **kw}


# -- the config form -----------------------------------------------------------------------------
def test_backend_choices_cover_every_flannel_backend():
    from labkit.flannel.config import KNOWN_BACKENDS
    choices = panels.backend_choices()
    assert {n for n, _, _ in choices} == set(KNOWN_BACKENDS) | set(SUPPORTED_BACKENDS)
    for name, ok, why in choices:
        assert name in SUPPORTED_BACKENDS or not ok
        assert bool(why) != ok
        assert ok or "does not implement" in why or "cannot run here" in why
    assert choices[0] == ("vxlan", True, "")


def test_a_good_form_gives_the_config_and_what_flannel_derives():
    c = panels.check_form(SPEC, **form(network="10.20.0.0/22"))
    assert c.ok and c.errors == {}
    assert c.config_json == '{"Network":"10.20.0.0/22","Backend":{"Type":"vxlan"}}'
    assert (c.effective_subnet_len, c.subnets, c.subnet_len_bounds) == (24, 3, (24, 30))


@pytest.mark.parametrize("network,message", [
    ("10.108.0.0/29", "network is too small. Minimum useful network prefix is /28"),
    ("10.108.0.0", "invalid CIDR address: 10.108.0.0"),
    ("0.0.0.0/0", "please define a correct Network parameter in the flannel config"),
    (" 10.108.0.0/16", "invalid CIDR address:  10.108.0.0/16"),
])
def test_network_errors_are_flannels_own(network, message):
    assert panels.check_form(SPEC, **form(network=network)).errors == {"network": message}


def test_subnet_len_and_vni_and_port_and_the_underlay():
    c = panels.check_form(SPEC, **form(network="10.20.0.0/22", subnet_len=26))
    assert c.ok and c.subnets == 15 and '"SubnetLen":26' in c.config_json
    assert "SubnetLen must be less than /31" in panels.check_form(SPEC, **form(subnet_len=31)).errors["subnet_len"]
    assert "VNI must be between" in panels.check_form(SPEC, **form(vni=10_000_000)).errors["vni"]
    assert panels.check_form(SPEC, **form(port=70000)).errors["port"].startswith("port must be between")
    assert "overlaps the underlay" in panels.check_form(SPEC, **form(network="192.168.0.0/16")).errors["network"]


def test_more_nodes_than_subnets_is_flagged_before_apply():
    err = panels.check_form(SPEC, **form(network="10.20.0.0/22", nodes=4)).errors["nodes"]
    assert "3 subnet(s)" in err and "out of subnets" in err


def test_an_unimplemented_backend_gives_the_reason():
    from labkit.flannel.config import KNOWN_BACKENDS
    off = [b for b in KNOWN_BACKENDS if b not in SUPPORTED_BACKENDS]
    if off:
        assert "does not implement" in panels.check_form(SPEC, **form(backend=off[0])).errors["backend"]
    assert panels.check_form(SPEC, **form(backend="bogus")).errors["backend"] == "unknown backend type: bogus"


def test_make_spec_leaves_flannel_defaults_out_of_the_config():
    s = panels.make_spec(SPEC, **form())
    assert s.vni is None and s.port is None and s.subnet_len is None
    assert s.network_config() == {"Network": "10.108.0.0/16", "Backend": {"Type": "vxlan"}}
    s = panels.make_spec(SPEC, **form(vni=4, port=4789, direct_routing=True))
    assert s.network_config()["Backend"] == {"Type": "vxlan", "VNI": 4, "Port": 4789, "DirectRouting": True}
    assert panels.etcdctl_command("/p", '{"a":1}') == """etcdctl put /p/config '{"a":1}'"""


def test_plan_is_the_labs_own_and_names_every_step():
    from labkit.lab import Lab
    lab = Lab(SPEC)                     # not built: plan() only reads the spec
    steps = lab.plan(panels.make_spec(SPEC, **form(network="10.20.0.0/22")))
    assert steps[0] == ("etcdctl put /coreos.com/network/config "
                        """'{"Network":"10.20.0.0/22","Backend":{"Type":"vxlan"}}'""")
    assert steps[1:] == ["flanneld: stop on every node",
                         "remove what vxlan left behind (like `ip link del flannel.1`)",
                         "flanneld: start on every node (each keeps its subnet)",
                         "docker: restart on every node (it reads FLANNEL_MTU at start)",
                         "containers: start again the ones docker stopped", "wait for routes to every peer"]
    assert "remove what" not in " ".join(lab.plan(panels.make_spec(SPEC, **form(backend="udp")), clean=False))
    assert lab.plan(SPEC) == []          # nothing changes, nothing done
    grow = lab.plan(panels.make_spec(SPEC, **form(nodes=4)))
    assert grow == ["add a node: underlay, flanneld, docker, containers"] * 2 + ["wait for routes to every peer"]
    shrink = Lab(dataclasses.replace(SPEC, nodes=3)).plan(SPEC, revoke=False)
    assert shrink == ["node2: stop flanneld, leave its lease to expire (as after a crash), remove its namespaces",
                      "wait for routes to every peer"]


@pytest.mark.parametrize("field,value", [("flavour", "legacy"), ("segments", 2), ("underlay", "192.168.60.0/24"),
                                         ("mtu", 9000), ("containers", 2), ("prefix", "/flannel/network")])
def test_plan_refuses_what_only_a_rebuild_changes(field, value):
    from labkit.lab import Lab
    with pytest.raises(LabError, match=f"cannot change {field} .*needs a rebuild"):
        Lab(SPEC).plan(dataclasses.replace(SPEC, **{field: value}))


# -- tables ------------------------------------------------------------------------------------
def node_status(name, ip, subnet, mac, docker0, network="10.108.0.0/16", arp=(), fdb=(), routes=()):
    return NodeStatus(
        name=name, namespace=f"nbt-{name}", public_ip=ip, subnet=subnet, vtep_mac=mac,
        lease={"key": f"/coreos.com/network/subnets/{subnet.replace('/', '-')}"}, docker0=docker0,
        docker0_in_network=docker0_in_range(docker0, "0.0.0.0/0", network) is True,
        in_range=docker0_in_range(docker0, subnet, network),
        services={"flanneld": "active", "docker": "active"}, subnet_env={},
        containers=[ContainerStatus("c1", None, False)],
        kernel={"device": {"name": "flannel.1", "mtu": 1450, "vni": 1, "port": 8472, "local": ip,
                           "addresses": [subnet.replace("/24", "/32")], "mac": mac},
                "arp": list(arp), "fdb": list(fdb), "routes": list(routes)})


def status(etcd_error=None):
    a = node_status("master", "192.168.50.1", "10.108.76.0/24", "56:fd:f6:b2:9b:23", "10.108.76.1/24",
                    arp=[{"ip": "10.108.28.0", "mac": "6e:c8:4b:92:48:dd", "permanent": True}],
                    fdb=[{"mac": "6e:c8:4b:92:48:dd", "dst": "192.168.50.2", "permanent": True}],
                    routes=[{"dst": "10.108.28.0/24", "via": "10.108.28.0", "dev": "flannel.1", "onlink": True}])
    b = node_status("node1", "192.168.50.2", "10.108.28.0/24", "6e:c8:4b:92:48:dd", "172.17.0.1/16",
                    arp=[{"ip": "10.108.76.0", "mac": "56:fd:f6:b2:9b:23", "permanent": True}])
    return LabStatus(name="nbt", network="10.108.0.0/16", backend="vxlan", prefix="/coreos.com/network",
                     nodes=[a, b], etcd_error=etcd_error)


def test_in_range_judges_docker0_against_the_nodes_own_lease():
    # in the Network, but in another node's subnet: docker0 from an older lease
    assert docker0_in_range("10.108.31.1/24", "10.108.32.0/24", "10.108.0.0/16") is False
    assert docker0_in_range("10.108.32.1/24", "10.108.32.0/24", "10.108.0.0/16") is True
    assert docker0_in_range("10.108.32.1/24", "10.108.32.0/24", "10.109.0.0/16") is False   # Network moved on
    assert docker0_in_range("10.108.32.1/24", None, "10.108.0.0/16") is False              # no lease
    assert docker0_in_range(None, "10.108.32.0/24", "10.108.0.0/16") is False


def test_status_json_keeps_its_shape_and_says_when_etcd_is_down():
    d = status().to_dict(kernel=False)
    # scripts read these first six; what the topology picture needs comes after them
    assert list(d) == ["name", "network", "backend", "prefix", "etcd_error", "nodes", "underlay", "segments",
                       "router", "etcd"]
    assert d["etcd_error"] is None and "kernel" not in d["nodes"][0]
    assert set(d["nodes"][0]) >= {"name", "namespace", "public_ip", "subnet", "vtep_mac", "lease", "docker0",
                                  "docker0_in_network", "services", "subnet_env", "containers", "in_range"}
    assert d["nodes"][0]["containers"] == [{"name": "c1", "ip": None, "running": False, "veth": None}]
    assert d["nodes"][0]["segment"] == 0 and d["nodes"][0]["uplink"] is None
    assert json.loads(status("etcd is not reachable (Connection refused)").to_json())["etcd_error"] \
        == "etcd is not reachable (Connection refused)"
    assert "kernel" in status().to_dict()["nodes"][0]


def test_with_etcd_down_the_table_warns_and_in_range_is_unknown():
    st = status("etcd is not reachable (Connection refused)")
    for n in st.nodes:
        n.in_range = None
    t = tables.result_table(st, "lab nbt")
    assert "WARNING: etcd is not reachable" in t.text() and [r[-1] for r in t.rows] == ["?", "?"]
    assert "etcd is not reachable" in tables.result_html(st)


def test_result_rows_mark_docker0_outside_the_nodes_subnet():
    rows = tables.result_rows(status())
    assert rows[0] == ["master", "192.168.50.1", "10.108.76.0/24", "56:fd:f6:b2:9b:23", "10.108.76.1/24", "✓"]
    assert rows[1][-1] == "✗"
    html = tables.result_html(status())
    assert "labkit-result" in html and "✓" in html and "✗" in html


def test_lab_view_ties_each_lease_to_its_kernel_entries():
    view = tables.lab_view(status())
    master_peer = view[0]["peers"][0]
    assert (master_peer["peer"], master_peer["arp_ok"], master_peer["fdb_ok"], master_peer["route_ok"]) == \
        ("node1", True, True, True)
    assert master_peer["route"] == "10.108.28.0/24 via 10.108.28.0 dev flannel.1 onlink"
    node1_peer = view[1]["peers"][0]
    assert (node1_peer["arp_ok"], node1_peer["fdb_ok"], node1_peer["route_ok"]) == (True, False, False)
    text = tables.lab_view_text(view, "node1")
    assert text.startswith("node1  lease /coreos.com/network/subnets/10.108.28.0-24")
    assert "✗ FDB    56:fd:f6:b2:9b:23 dst 192.168.50.1 self permanent" in text
    assert "master" not in text.splitlines()[0]
    assert "labkit-labview" in tables.lab_view_html(view)


def test_matrix():
    eps = ["master/c1", "node1/c1"]
    res = {("master/c1", "node1/c1"): True, ("node1/c1", "master/c1"): False}
    assert tables.matrix_rows(res, eps) == [["master/c1", "-", "ok"], ["node1/c1", "FAIL", "-"]]
    assert tables.matrix_text(res, eps).splitlines()[-1] == "1 of 2 pairs reachable"
    html = tables.matrix_html(res, eps)
    assert "#cf222e" in html and "#2da44e" in html and "labkit-matrix" in html


# -- the widgets, on a fake lab -------------------------------------------------------------------
class FakeLab:
    def __init__(self):
        from labkit.lab import Lab
        self.real = Lab(SPEC)            # for plan(): the same steps a real lab would take
        self.spec = SPEC
        self.nodes = self.real.nodes
        self.reconfigured = []
        self.fail = None

    def status(self):
        return status()

    def plan(self, new_spec):
        return self.real.plan(new_spec)

    def reconfigure(self, new_spec, progress=None):
        if self.fail:
            raise self.fail
        steps = self.plan(new_spec)
        for i, step in enumerate(steps):
            progress(i, len(steps), step)
        progress(len(steps), len(steps), "done")
        self.reconfigured.append(new_spec)
        return "result"

    def endpoints(self):
        return ["master/c1", "node1/c1"]

    def connectivity(self, eps):
        return {(a, b): True for a in eps for b in eps if a != b}


def test_config_panel_checks_live_and_applies_through_reconfigure():
    from labkit.widgets import ConfigPanel
    lab = FakeLab()
    p = ConfigPanel(lab)
    assert repr(p) == 'ConfigPanel(lab nbt: {"Network":"10.108.0.0/16","Backend":{"Type":"vxlan"}})'
    assert "labkit-result" in p.result.value
    p.network.value = "10.20.0.0/29"
    assert "Minimum useful network prefix is /28" in p.errors.value and p.apply_button.disabled
    p.network.value = "10.20.0.0/22"
    assert p.errors.value == "" and not p.apply_button.disabled
    assert [v for _, v in p.subnet_len.options] == [0, 24, 25, 26, 27, 28, 29, 30]
    off = [n for n, b in p.backend_buttons.items() if b.disabled]
    for name in off:
        assert "does not implement" in p.backend_buttons[name].tooltip or \
            "cannot run here" in p.backend_buttons[name].tooltip
        with pytest.raises(LabError):
            p.backend = name
    assert p.backend == "vxlan"

    table = p.apply(echo=False)
    assert lab.reconfigured[0].network == "10.20.0.0/22" and p.last_result == "result"
    assert p.plan == lab.real.plan(lab.reconfigured[0]) and len(p.plan) == 7
    assert p.progress.max == p.progress.value == 7 and "done" in p.step.value
    assert "✓" in table.text() and "labkit-result" in p.result.value
    p.apply_clicked()                      # the button: no exception escapes
    assert len(lab.reconfigured) == 2


def test_config_panel_shows_a_failed_apply():
    from labkit.widgets import ConfigPanel
    lab = FakeLab()
    p = ConfigPanel(lab)
    p.network.value = "10.20.0.0/22"
    lab.fail = LabError("boom")
    p.apply_clicked()
    assert "Apply failed: boom" in p.step.value and not p.apply_button.disabled


def test_lab_view_and_matrix_widgets():
    from labkit.widgets import ConnectivityMatrix, LabView
    v = LabView(FakeLab())
    assert repr(v) == "LabView(lab nbt: 2 nodes)" and "✗ FDB" in v.refresh("node1")
    m = ConnectivityMatrix(FakeLab())
    assert repr(m) == "ConnectivityMatrix(lab nbt: 2 of 2 pairs reachable)"
    assert "labkit-matrix" in m.grid.value


def test_capture_panel_runs_a_capture(monkeypatch, tmp_path):
    from labkit import capture as C
    from labkit.widgets import CapturePanel
    from tests.unit.test_capture import vxlan_frame
    monkeypatch.setattr(C, "interfaces", lambda lab, t: ["docker0", "eth0", "flannel.1", "lo"])
    calls = []

    def fake_many(lab, points, **kw):
        calls.append((points, kw))
        raw, _ = vxlan_frame()
        return [C.Capture(target=points[0][0], iface=points[0][1], filter=kw["filter"], count=kw["count"],
                          timeout=kw["timeout"], packets=[C.Packet(1, 0.0, "out", raw, C.DLT_EN10MB)],
                          stopped="count")]
    monkeypatch.setattr(C, "capture_many", fake_many)
    p = CapturePanel(FakeLab(), pcap_dir=str(tmp_path))
    assert p.iface.value == "eth0" and p.traffic.value == ("master/c1", "node1/c1")
    cap = p.run()
    assert calls[0][0] == [("master", "eth0")] and calls[0][1]["filter"] == "icmp or udp port 8472"
    assert "VXLAN vni=1" in p.table.value and "inner ICMP" in p.layers.value
    assert repr(p) == "CapturePanel(lab nbt: 1 packets captured)" and cap.stopped == "count"


# -- predict, then run ------------------------------------------------------------------------------
def test_predict_hides_the_answer_until_the_learner_commits():
    from labkit.notebook.predict import HIDDEN
    from labkit.notebook.widgets import Predict
    p = Predict("What MTU does flannel.1 get?", answer="1450.", explanation="1500 - 50 bytes of VXLAN",
                options=["1500", "1472", "1450"], correct=2)
    text = repr(p)
    assert text.splitlines()[0] == "PREDICT, THEN RUN: What MTU does flannel.1 get?"
    assert "(c) 1450" in text and text.endswith(f"[{HIDDEN}]")
    bundle = p._repr_mimebundle_()
    assert bundle["text/plain"] == text and "1500 - 50" not in bundle["text/plain"]

    def shown():        # every value the widget tree holds: what a saved widget state would contain
        todo, out = [p], []
        while todo:
            w = todo.pop()
            out.append(str(getattr(w, "value", "")))
            todo.extend(getattr(w, "children", ()))
        return " ".join(out)
    assert "1500 - 50" not in shown() and "1450." not in shown() and p.feedback.value == ""
    assert p.answer() == HIDDEN and p.right() is None and p.result_text() == HIDDEN
    assert p.commit_button.disabled                 # nothing chosen yet
    with pytest.raises(ValueError):
        p.commit()
    p.choice.value = "1472"
    assert not p.commit_button.disabled
    out = p.commit()
    assert p.revealed and p.right() is False and p.choice.disabled and p.commit_button.disabled
    assert "your answer: 1472 (not quite)" in out and "answer: 1450." in out and "1500 - 50" in p.feedback.value
    assert p.commit(0) == out                       # committed once: a second commit changes nothing
    assert repr(p).endswith("[committed: 1472]")


def test_predict_free_text_and_a_right_choice():
    from labkit.notebook.predict import Predict
    p = Predict("How many bytes on eth0?", answer="148 bytes.")
    assert "(free text)" in repr(p) and "148" not in repr(p) and p.text is not None
    p.text.value = "  "
    assert p.commit_button.disabled
    assert "answer: 148 bytes." in p.commit("150") and p.right() is None and p.text.disabled
    q = Predict("?", answer="udp", options=["vxlan", "udp"], correct=1)
    q.commit(1)
    assert q.right() is True and "Right." in q.feedback.value
    with pytest.raises(ValueError):
        Predict("?", answer="x", options=["a"], correct=3)


# -- the gauntlet's scoreboard and cards (no lab) -------------------------------------------------------
def test_scoreboard_reads_the_progress_store(tmp_path):
    from labkit.notebook.gauntlet import Scoreboard
    from labkit.scenario.progress import Progress
    store = Progress(str(tmp_path / "progress.json"))
    board = Scoreboard(["ip-forward-off", "mtu-black-hole"], store)
    assert repr(board).splitlines()[0] == "scoreboard: 0 of 2 solved"
    store.started("ip-forward-off", "nb09s", now=1000.0)
    store.hinted("ip-forward-off", 2)
    store.checked("ip-forward-off", True, now=1095.0)
    store.solution_shown("mtu-black-hole")
    rows = board.refresh().rows
    assert rows[0] == ["1", "ip-forward-off", "✓", "2", "1 min 35 s", "no"]
    assert rows[1] == ["2", "mtu-black-hole", "–", "0", "–", "yes"]
    assert "1 of 2 solved" in repr(board) and "ip-forward-off" in board.body.value


def test_gauntlet_cards_show_the_task_without_building_a_lab(monkeypatch):
    from labkit.notebook import gauntlet
    monkeypatch.setenv("LABKIT_NOTEBOOK_SUFFIX", "x1a2b3")
    assert gauntlet.lab_name("nb09s") == "nb09sx1a2b3" and gauntlet.lab_name("mylab") == "mylab"
    from labkit.notebook.session import notebook_labs
    assert all(notebook_labs().match(gauntlet.lab_name(n)) for n in ("nb01c", "nb08c", "nb09s", "nb11c"))
    assert isinstance(gauntlet.progress_store(), gauntlet.NoProgress)      # a test run is nobody's progress
    g = gauntlet.Gauntlet(["ip-forward-off", "udp-8472-blocked"])
    card = g.card(2)
    text = repr(card)
    assert text.startswith("2. ") and "udp-8472-blocked" in text and 'not started: press "Start this one"' in text
    with pytest.raises(LabError):
        g.card(3)
    with pytest.raises(LabError):
        g.check()
    g.down()                                        # nothing running: says so, removes nothing


# -- magics and notebook helpers ------------------------------------------------------------------
def test_node_magic_keeps_the_command_line_verbatim():
    from labkit.magics import parse_line
    line = """master etcdctl set /flannel/network/config '{"Network":"10.108.0.0/16","Backend": {"Type": "vxlan"}}'"""
    assert parse_line(line) == ({}, "master", line.split(" ", 1)[1])
    assert parse_line("--lab nb07l --timeout 5 node1/c1 ip route") == (
        {"lab": "nb07l", "timeout": 5.0}, "node1/c1", "ip route")
    for bad in ("", "--lab", "--bogus x node1 ls", "--timeout soon node1 ls"):
        with pytest.raises(LabError):
            parse_line(bad)


def test_node_magic_prints_output_and_exit_status(capsys):
    from labkit.magics import run

    class Lab:
        def sh(self, target, cmd, timeout=60, via="python"):
            assert via == "%node"   # recorded in the lab's transcript as typed at %node
            return types.SimpleNamespace(stdout=f"{target}: {cmd}", stderr="oops\n", returncode=3)
    run("node1", "false", lab=Lab())
    out, err = capsys.readouterr()
    assert out == "node1: false\n" and err == "oops\n[exit 3]\n"


def test_magics_register_without_variable_expansion():
    from labkit import magics
    got = {}
    ip = types.SimpleNamespace(register_magic_function=lambda fn, kind, name: got.setdefault(kind, (fn, name)))
    magics.load_ipython_extension(ip)
    from IPython.core.magic import MAGIC_NO_VAR_EXPAND_ATTR
    for kind in ("line", "cell"):
        fn, name = got[kind]
        assert name == "node" and getattr(fn, MAGIC_NO_VAR_EXPAND_ATTR, False)


def test_table_and_notebook_lab_names():
    from labkit.jupyter import NOTEBOOK_LAB, Table  # the old path still works
    t = Table(["a", "bb"], [["1", None], ["333", "x<y"]], title="T")
    assert t.text() == "T\na    bb\n1\n333  x<y"
    assert "x&lt;y" in t._repr_html_()
    assert all(NOTEBOOK_LAB.match(n) for n in ("nb00", "nb01", "nb07l", "nb07m", "nb11", "nb11c"))
    assert not any(NOTEBOOK_LAB.match(n) for n in ("lab", "nb1", "t1a2b3c", "nbx01"))


def test_a_test_run_gives_its_notebook_labs_their_own_names(monkeypatch):
    from labkit import jupyter
    monkeypatch.setenv("LABKIT_NOTEBOOK_SUFFIX", "x1a2b3")
    pat = jupyter.notebook_labs()
    assert pat.match("nb01x1a2b3") and pat.match("nb07lx1a2b3")
    assert not pat.match("nb01") and not pat.match("nb01x999999") and not pat.match("lab")
    monkeypatch.setenv("LABKIT_NOTEBOOK_SUFFIX", "")
    assert jupyter.notebook_labs().match("nb07m") and not jupyter.notebook_labs().match("nb01x1a2b3")
    monkeypatch.setenv("LABKIT_NOTEBOOK_SUFFIX", "-rm -rf")
    with pytest.raises(LabError):
        jupyter.notebook_labs()


# -- the owner check: a notebook never removes a lab it does not own -------------------------------


def dead_pid():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_owner_is_recorded_with_its_start_time(run_dir):
    st = make_state("nbo01", "labkit up", os.getpid())
    o = st.owner()
    assert (o["pid"], o["by"], o["alive"]) == (os.getpid(), "labkit up", True) and o["start"]
    assert make_state("nbo02", "labkit up", dead_pid()).owner()["alive"] is False


def test_a_notebook_replaces_only_its_own_or_an_orphaned_notebook_lab(run_dir):
    from labkit.notebook.session import check_removable
    check_removable("nbo01")                                       # no such lab
    make_state("nbo01", "notebook kernel", os.getpid())
    check_removable("nbo01")                                       # this kernel's: re-run from the top
    make_state("nbo02", "notebook kernel", dead_pid())
    check_removable("nbo02")                                       # its kernel is gone
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        make_state("nbo03", "notebook kernel", other.pid)
        with pytest.raises(LabError, match=rf"created by notebook kernel pid {other.pid}, which is still "
                                           r"running.*Pick another name \(e.g. start\('nb03b'"):
            check_removable("nbo03", "nb03")
    finally:
        other.kill()
        other.wait()
    make_state("nbo04", "labkit up", dead_pid())                   # the CLI exits, its lab lives on
    with pytest.raises(LabError, match=r"created by `labkit up` \(pid \d+, exited; the lab lives on\).*"
                                       r"labkit down --name nbo04"):
        check_removable("nbo04")


# -- layering --------------------------------------------------------------------------------------
def imports_of(path):
    tree = ast.parse(pathlib.Path(path).read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            out.add(("." * node.level) + (node.module or ""))
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def test_the_notebook_layer_only_imports_downwards():
    root = pathlib.Path(__file__).resolve().parents[2] / "labkit"
    floors = ["tables", "netfilter", "textbox", "predict", "panels", "session", "magics", "setup_check", "widgets",
              "execute", "challenge", "gauntlet"]
    for i, floor in enumerate(floors):
        mods = imports_of(root / "notebook" / f"{floor}.py")
        above = {f".{f}" for f in floors[i + 1:]} | {f"labkit.notebook.{f}" for f in floors[i + 1:]}
        assert not mods & above, (floor, mods & above)
    for name in ("widgets", "panels"):
        mods = imports_of(root / "notebook" / f"{name}.py")
        assert not {m for m in mods if m.split(".")[-1] in ("netns", "footprint", "docker", "containers")}, mods
    below = [p for p in root.rglob("*.py") if "notebook" not in p.parts and p.name not in ("jupyter.py", "magics.py")
             and "widgets" not in p.parts]
    for p in below:
        assert not {m for m in imports_of(p) if "notebook" in m or m.endswith(("jupyter", "widgets"))}, p
