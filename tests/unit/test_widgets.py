"""The widgets' logic (labkit.widgets.logic) and the widgets themselves, with a fake lab."""
import types

import pytest

from labkit.errors import LabError
from labkit.spec import LabSpec, SUPPORTED_BACKENDS
from labkit.widgets import logic

SPEC = LabSpec(name="nbt", nodes=2, seed=1)
FORM = dict(network="10.108.0.0/16", subnet_len=None, backend="vxlan", vni=1, port=0,
            direct_routing=False, nodes=2)


def form(**kw):
    return {**FORM, **kw}


# -- the config form -----------------------------------------------------------------------------
def test_backend_choices_cover_every_flannel_backend():
    from labkit.flannel.config import KNOWN_BACKENDS
    choices = logic.backend_choices()
    assert {n for n, _, _ in choices} == set(KNOWN_BACKENDS) | set(SUPPORTED_BACKENDS)
    for name, ok, why in choices:
        assert name in SUPPORTED_BACKENDS or not ok
        assert bool(why) != ok
        assert ok or "does not implement" in why or "cannot run here" in why
    assert choices[0] == ("vxlan", True, "")


def test_a_good_form_gives_the_config_and_what_flannel_derives():
    c = logic.check_form(SPEC, **form(network="10.20.0.0/22"))
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
    assert logic.check_form(SPEC, **form(network=network)).errors == {"network": message}


def test_subnet_len_and_vni_and_port_and_the_underlay():
    c = logic.check_form(SPEC, **form(network="10.20.0.0/22", subnet_len=26))
    assert c.ok and c.subnets == 15 and '"SubnetLen":26' in c.config_json
    assert "SubnetLen must be less than /31" in logic.check_form(SPEC, **form(subnet_len=31)).errors["subnet_len"]
    assert "VNI must be between" in logic.check_form(SPEC, **form(vni=10_000_000)).errors["vni"]
    assert logic.check_form(SPEC, **form(port=70000)).errors["port"].startswith("port must be between")
    assert "overlaps the underlay" in logic.check_form(SPEC, **form(network="192.168.0.0/16")).errors["network"]


def test_more_nodes_than_subnets_is_flagged_before_apply():
    err = logic.check_form(SPEC, **form(network="10.20.0.0/22", nodes=4)).errors["nodes"]
    assert "3 subnet(s)" in err and "out of subnets" in err


def test_an_unimplemented_backend_gives_the_reason():
    from labkit.flannel.config import KNOWN_BACKENDS
    off = [b for b in KNOWN_BACKENDS if b not in SUPPORTED_BACKENDS]
    if off:
        assert "does not implement" in logic.check_form(SPEC, **form(backend=off[0])).errors["backend"]
    assert logic.check_form(SPEC, **form(backend="bogus")).errors["backend"] == "unknown backend type: bogus"


def test_make_spec_leaves_flannel_defaults_out_of_the_config():
    s = logic.make_spec(SPEC, **form())
    assert s.vni is None and s.port is None and s.subnet_len is None
    assert s.network_config() == {"Network": "10.108.0.0/16", "Backend": {"Type": "vxlan"}}
    s = logic.make_spec(SPEC, **form(vni=4, port=4789, direct_routing=True))
    assert s.network_config()["Backend"] == {"Type": "vxlan", "VNI": 4, "Port": 4789, "DirectRouting": True}
    assert logic.etcdctl_command("/p", '{"a":1}') == """etcdctl put /p/config '{"a":1}'"""


def fake_lab(spec=SPEC):
    nodes = [types.SimpleNamespace(name=n) for n in spec.node_names]
    return types.SimpleNamespace(spec=spec, nodes=nodes)


def test_apply_plan_restarts_flanneld_then_docker_on_every_node():
    lab = fake_lab()
    steps = logic.apply_plan(lab, logic.make_spec(SPEC, **form(network="10.20.0.0/22")))
    assert steps[0].startswith("etcdctl put /coreos.com/network/config '{\"Network\":\"10.20.0.0/22\"")
    assert steps[1:5] == ["master: restart flanneld", "master: restart docker",
                          "node1: restart flanneld", "node1: restart docker"]
    assert len(steps) == 7
    rebuild = logic.apply_plan(lab, logic.make_spec(SPEC, **form(nodes=3)))
    assert rebuild == ["remove lab nbt (2 nodes)", "build lab nbt with 3 nodes and the new config"]


# -- tables ------------------------------------------------------------------------------------
def node_status(name, ip, subnet, mac, docker0, in_net=True, arp=(), fdb=(), routes=()):
    return {"name": name, "public_ip": ip, "subnet": subnet, "vtep_mac": mac, "docker0": docker0,
            "docker0_in_network": in_net, "lease": {"key": f"/coreos.com/network/subnets/{subnet.replace('/', '-')}"},
            "kernel": {"device": {"name": "flannel.1", "mtu": 1450, "vni": 1, "port": 8472, "local": ip,
                                  "addresses": [subnet.replace("/24", "/32")], "mac": mac},
                       "arp": list(arp), "fdb": list(fdb), "routes": list(routes)}}


def status():
    a = node_status("master", "192.168.50.1", "10.108.76.0/24", "56:fd:f6:b2:9b:23", "10.108.76.1/24",
                    arp=[{"ip": "10.108.28.0", "mac": "6e:c8:4b:92:48:dd", "permanent": True}],
                    fdb=[{"mac": "6e:c8:4b:92:48:dd", "dst": "192.168.50.2", "permanent": True}],
                    routes=[{"dst": "10.108.28.0/24", "via": "10.108.28.0", "dev": "flannel.1", "onlink": True}])
    b = node_status("node1", "192.168.50.2", "10.108.28.0/24", "6e:c8:4b:92:48:dd", "172.17.0.1/16", in_net=False,
                    arp=[{"ip": "10.108.76.0", "mac": "56:fd:f6:b2:9b:23", "permanent": True}])
    return {"name": "nbt", "network": "10.108.0.0/16", "nodes": [a, b]}


def test_result_rows_mark_docker0_outside_the_nodes_subnet():
    rows = logic.result_rows(status())
    assert rows[0] == ["master", "192.168.50.1", "10.108.76.0/24", "56:fd:f6:b2:9b:23", "10.108.76.1/24", "✓"]
    assert rows[1][-1] == "✗"
    # docker0 in the node's old subnet, but the Network in etcd has moved on: ✗ too
    assert logic.result_rows(status(), network="10.109.0.0/16")[0][-1] == "✗"
    html = logic.result_html(status())
    assert "labkit-result" in html and "✓" in html and "✗" in html


def test_lab_view_ties_each_lease_to_its_kernel_entries():
    view = logic.lab_view(status())
    master_peer = view[0]["peers"][0]
    assert (master_peer["peer"], master_peer["arp_ok"], master_peer["fdb_ok"], master_peer["route_ok"]) == \
        ("node1", True, True, True)
    assert master_peer["route"] == "10.108.28.0/24 via 10.108.28.0 dev flannel.1 onlink"
    node1_peer = view[1]["peers"][0]
    assert (node1_peer["arp_ok"], node1_peer["fdb_ok"], node1_peer["route_ok"]) == (True, False, False)
    text = logic.lab_view_text(view, "node1")
    assert text.startswith("node1  lease /coreos.com/network/subnets/10.108.28.0-24")
    assert "✗ FDB    56:fd:f6:b2:9b:23 dst 192.168.50.1 self permanent" in text
    assert "master" not in text.splitlines()[0]
    assert "labkit-labview" in logic.lab_view_html(view)


def test_matrix():
    eps = ["master/c1", "node1/c1"]
    res = {("master/c1", "node1/c1"): True, ("node1/c1", "master/c1"): False}
    assert logic.matrix_rows(res, eps) == [["master/c1", "-", "ok"], ["node1/c1", "FAIL", "-"]]
    assert logic.matrix_text(res, eps).splitlines()[-1] == "1 of 2 pairs reachable"
    html = logic.matrix_html(res, eps)
    assert "#cf222e" in html and "#2da44e" in html and "labkit-matrix" in html


# -- the widgets, on a fake lab -------------------------------------------------------------------
class FakeLab:
    def __init__(self):
        self.spec = SPEC
        self.nodes = fake_lab().nodes
        self.applied = None

    def status(self):
        return status()

    def endpoints(self):
        return ["master/c1", "node1/c1"]

    def connectivity(self, eps):
        return {(a, b): True for a in eps for b in eps if a != b}


def test_config_panel_checks_live_and_applies(monkeypatch):
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

    seen = []

    def fake_apply(lab_, new_spec, progress=None):
        for i, step in enumerate(logic.apply_plan(lab_, new_spec)):
            progress(i, 7, step)
        seen.append(new_spec)
        return status()
    monkeypatch.setattr(logic, "apply_config", fake_apply)
    table = p.apply(echo=False)
    assert seen[0].network == "10.20.0.0/22"
    assert p.progress.max == 7 and "node1: restart docker" not in p.step.value
    assert "✓" in table.text() and "labkit-result" in p.result.value
    p._apply_clicked()                      # the button: no exception escapes
    assert len(seen) == 2


def test_config_panel_shows_a_failed_apply(monkeypatch):
    from labkit.widgets import ConfigPanel
    p = ConfigPanel(FakeLab())
    monkeypatch.setattr(logic, "apply_config", lambda *a, **k: (_ for _ in ()).throw(LabError("boom")))
    p._apply_clicked()
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
        def sh(self, target, cmd, timeout=60):
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
    from labkit.jupyter import NOTEBOOK_LAB, Table
    t = Table(["a", "bb"], [["1", None], ["333", "x<y"]], title="T")
    assert t.text() == "T\na    bb\n1\n333  x<y"
    assert "x&lt;y" in t._repr_html_()
    assert all(NOTEBOOK_LAB.match(n) for n in ("nb00", "nb01", "nb07l", "nb07m"))
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
