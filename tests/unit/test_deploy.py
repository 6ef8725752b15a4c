"""deploy/: what can be checked without Kubernetes or a container build.

- values.yaml merged over the chart's own defaults as helm merges them (deploy/z2jh-4.4.0/values.yaml),
  against Zero to JupyterHub 4.4.0's values schema (the chart's values.schema.yaml with descriptions
  dropped, as the chart packages it: deploy/z2jh-4.4.0/values.schema.json): a misspelt key fails,
  as `helm install` would refuse it;
- the settings the labs need are there (pod user namespace, capabilities, limits, culling);
- the image's entry point, run here with a stand-in server: course copied once, never over the
  learner's work, `--allow-root` added for uid 0, a plain warning when uid 0 is the node's root;
- the Dockerfile installs what `./run` installs and copies only files that exist.
"""
import copy
import json
import os
import re
import subprocess

import jsonschema
import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEPLOY = os.path.join(ROOT, "deploy")


def load_values():
    with open(os.path.join(DEPLOY, "values.yaml")) as f:
        return yaml.safe_load(f)


def schema():
    with open(os.path.join(DEPLOY, "z2jh-4.4.0", "values.schema.json")) as f:
        return json.load(f)


def helm_merge(defaults, override):
    """Helm's coalescing: maps merge key by key, anything else replaces, null removes."""
    out = dict(defaults)
    for k, v in override.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = helm_merge(out[k], v)
        else:
            out[k] = v
    return out


def merged(values):
    with open(os.path.join(DEPLOY, "z2jh-4.4.0", "values.yaml")) as f:
        return helm_merge(yaml.safe_load(f), values)


def test_values_match_the_charts_schema():
    jsonschema.validate(merged(load_values()), schema())


@pytest.mark.parametrize("path,bad", [
    (("singleuser", "memmory"), {"limit": "1G"}),          # a typo: additionalProperties is false
    (("cull", "timeout"), "an hour"),                     # a wrong type
    (("singleuser", "cpu", "limit"), "one"),
])
def test_schema_refuses_a_broken_values_file(path, bad):
    v = copy.deepcopy(load_values())
    d = v
    for k in path[:-1]:
        d = d[k]
    d[path[-1]] = bad
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(merged(v), schema())


def test_values_give_the_pod_what_the_labs_need():
    v = load_values()
    su = v["singleuser"]
    assert su["extraPodConfig"]["hostUsers"] is False          # uid 0 in the pod is not the node's
    ctx = v["hub"]["config"]["KubeSpawner"]["container_security_context"]
    assert {"NET_ADMIN", "SYS_ADMIN", "NET_RAW"} <= set(ctx["capabilities"]["add"])
    assert ctx["capabilities"]["drop"] == ["ALL"] and ctx["allowPrivilegeEscalation"] is False
    assert su["memory"]["limit"] and su["cpu"]["limit"] and su["memory"]["guarantee"]
    assert v["cull"]["enabled"] and v["cull"]["timeout"] >= 600


def run_entrypoint(tmp_path, *cmd, home=None):
    env = {"PATH": f"{tmp_path}/bin:/usr/bin:/bin", "HOME": str(home or tmp_path / "home"),
           "LABKIT_COURSE": str(tmp_path / "course")}
    return subprocess.run([os.path.join(DEPLOY, "entrypoint.sh"), *cmd], env=env, capture_output=True,
                          text=True, timeout=30)


@pytest.fixture
def stand_in(tmp_path):
    (tmp_path / "course").mkdir()
    (tmp_path / "course" / "01-etcd.ipynb").write_text("{}")
    (tmp_path / "bin").mkdir()
    server = tmp_path / "bin" / "jupyterhub-singleuser"
    server.write_text('#!/bin/sh\necho "ARGS $*"\n')
    server.chmod(0o755)
    return tmp_path


def test_entrypoint_copies_the_course_once_and_execs_the_server(stand_in):
    r = run_entrypoint(stand_in, "jupyterhub-singleuser", "--port=8888")
    assert r.returncode == 0, r.stderr
    copied = stand_in / "home" / "flannel-lab" / "01-etcd.ipynb"
    assert copied.read_text() == "{}"
    args = r.stdout.split("ARGS ", 1)[1].split()
    assert args[0] == "--port=8888"
    assert ("--allow-root" in args) == (os.geteuid() == 0)
    # a second start never overwrites the learner's work
    copied.write_text('{"mine": 1}')
    r = run_entrypoint(stand_in, "jupyterhub-singleuser")
    assert r.returncode == 0 and copied.read_text() == '{"mine": 1}'


def test_entrypoint_warns_when_root_is_the_nodes_root(stand_in):
    if os.geteuid() != 0:
        pytest.skip("the warning is about uid 0")
    with open("/proc/self/uid_map") as f:
        host_root = f.read().split()[1] == "0"
    r = run_entrypoint(stand_in, "true")
    assert ("uid 0 here is the node's root" in r.stderr) == host_root, r.stderr


def test_dockerfile_installs_what_run_installs():
    with open(os.path.join(DEPLOY, "Dockerfile")) as f:
        docker = f.read()
    with open(os.path.join(ROOT, "run")) as f:
        run = f.read()
    apt = re.search(r"APT_PACKAGES=\(([^)]*)\)", run).group(1).split()
    installed = re.search(r"apt-get install -y --no-install-recommends \\\s*(.*?)&&", docker, re.S).group(1).split()
    missing = set(apt) - set(installed) - {"\\"}
    assert not missing, f"the image lacks what ./run installs: {missing}"
    for src in re.findall(r"^COPY (.+) \S+$", docker, re.M):
        for path in src.split():
            assert os.path.exists(os.path.join(ROOT, path)), f"COPY {path}: no such file"
    assert "-c constraints.txt" in docker   # the same pins as everywhere
