"""docker's names for unnamed containers: adjective_scientist, never one already in use."""
import types

from labkit.docker import containers
from labkit.shims import docker


def _lab_with(monkeypatch, names):
    recs = [types.SimpleNamespace(name=n) for n in names]
    monkeypatch.setattr(containers, "list_all", lambda state, node: recs)
    return types.SimpleNamespace(state=None), types.SimpleNamespace(name="node1")


def test_a_random_name_is_never_one_in_use(monkeypatch):
    taken = [f"{a}_{w}" for a in docker.ADJ for w in docker.NAMES][:-1]
    lab, node = _lab_with(monkeypatch, taken)
    last = f"{docker.ADJ[-1]}_{docker.NAMES[-1]}"
    assert {docker._random_name(lab, node) for _ in range(20)} == {last}


def test_when_every_pair_is_used_a_digit_is_added(monkeypatch):
    everything = [f"{a}_{w}" for a in docker.ADJ for w in docker.NAMES]
    lab, node = _lab_with(monkeypatch, everything + [f"{docker.ADJ[0]}_{docker.NAMES[0]}1"])
    name = docker._random_name(lab, node)
    assert name == f"{docker.ADJ[0]}_{docker.NAMES[1]}1"
    containers.check_container_name(name)
