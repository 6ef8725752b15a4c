"""Every scenario, verified in a real lab: start -> its outcome checks fail -> solve -> they pass.

A scenario whose outcome checks pass before the fix (a symptom the lab does not show) fails
here. Then one scenario end to end through the CLI: check is never sticky, hints persist in
the lab, progress survives `down`.
"""
import json
import time

import pytest

from labkit.scenario import engine, model
from tests.helpers import labkit, unique_name

NAMES = sorted(model.available())


@pytest.fixture
def state_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    return tmp_path


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.timeout(150)
def test_verify(name, lab_name, state_home):
    t0 = time.monotonic()
    res = engine.Challenge(name, name=lab_name).verify()
    assert res.ok, res.text()
    assert not (state_home / "labkit" / "progress.json").exists()  # verify is nobody's progress
    print(f"{name}: {time.monotonic() - t0:.1f}s")


@pytest.mark.timeout(150)
def test_cli_start_check_hint_solve_and_progress(lab_name, state_home):
    env_name = ["--name", lab_name]
    env = {"XDG_STATE_HOME": str(state_home), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    r = labkit("scenario", "start", "udp-8472-blocked", *env_name, env=env)
    assert r.returncode == 0, r.stderr
    assert "A firewall rule drops VXLAN" in r.stdout and "labkit scenario check --name" in r.stdout
    info = json.loads(open(f"/run/labkit/{lab_name}/scenario.json").read())
    assert info["scenario"] == "udp-8472-blocked"
    r = labkit("scenario", "check", *env_name, env=env)
    assert r.returncode == 1 and "✗ pods-reach-each-other (outcome)" in r.stdout
    assert "✗ vxlan-port-open (diagnostic)" in r.stdout and "look:     node1$ iptables -t filter -S INPUT" in r.stdout
    ch = engine.Challenge.attach(lab_name)     # the same lab from Python (a notebook)
    assert ch.check().to_dict()["solved"] is False
    assert labkit("scenario", "hint", *env_name, env=env).stdout.startswith("hint 1 of 3:")
    assert ch.hint()[0] == 2                   # hints shown are kept in the lab (scenario.json)
    # the learner's own fix (not the solution's command): an ACCEPT before the DROP
    assert ch.lab.sh("node1", "iptables -I INPUT -p udp --dport 8472 -j ACCEPT").returncode == 0
    r = labkit("scenario", "check", *env_name, env=env)
    assert r.returncode == 0 and "SOLVED" in r.stdout, r.stdout
    # undo it: checks run again every time, a pass is not remembered
    assert ch.lab.sh("node1", "iptables -D INPUT -p udp --dport 8472 -j ACCEPT").returncode == 0
    assert not ch.check().solved
    assert labkit("scenario", "hint", *env_name, env=env).stdout.startswith("hint 3 of 3:")
    r = labkit("scenario", "solve", *env_name, env=env)
    assert r.returncode == 0 and "SOLVED" in r.stdout
    assert labkit("scenario", "down", *env_name, env=env).returncode == 0
    progress = json.loads((state_home / "labkit" / "progress.json").read_text())["scenarios"]["udp-8472-blocked"]
    assert progress["attempts"] == 1 and progress["hints_used"] == 3 and progress["checks_run"] == 4
    assert progress["solved_at"] >= progress["started_at"] and progress["solution_shown"] is True
    r = labkit("scenario", "check", *env_name, env=env)
    assert r.returncode == 1 and f"no lab named {lab_name!r} is running" in r.stderr


def test_python_api_and_list(state_home):
    import labkit as lk
    ch = lk.scenario("ip-forward-off", name=unique_name("sc"))
    assert isinstance(ch, engine.Challenge) and ch.scenario.name == "ip-forward-off"
    r = labkit("scenario", "list", "--json")
    assert r.returncode == 0, r.stderr
    assert {s["name"] for s in json.loads(r.stdout)} == set(NAMES)
    r = labkit("scenario", "show", "mtu-black-hole")
    assert r.returncode == 0 and "to node1/c1" not in r.stdout and "full-size-master-to-node1" in r.stdout
