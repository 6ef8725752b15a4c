"""environment.yml, pyproject.toml and constraints.txt pin the same versions; CI runs the README's command."""
import json
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def read(name):
    with open(os.path.join(ROOT, name)) as f:
        return f.read()


def pins(text):
    return dict(re.findall(r"([A-Za-z0-9_.-]+)==([0-9][^\s\"',]*)", text))


def test_environment_yml_matches_pyproject():
    project = pins(read("pyproject.toml"))
    env = pins(read("environment.yml"))
    assert project and project == env


def test_constraints_agree_with_pyproject():
    constraints = {k.lower(): v for k, v in pins(read("constraints.txt")).items()}
    for name, version in pins(read("pyproject.toml")).items():
        assert constraints[name.lower()] == version, name


def test_ci_runs_the_readme_test_command():
    readme = read("README.md")
    assert "./run test" in readme
    assert re.search(r"^exec \./run test$", read(".ci/run"), re.M)


def pyproject_requirements():
    import tomllib
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)["project"]["dependencies"]


# etcd3 0.12.0 ships only an sdist, which `--only-binary` cannot judge: its own
# requirements (from its setup.py) are resolved in its place and checked against the pins.
ETCD3_REQUIRES = ["grpcio>=1.27.1", "protobuf>=3.6.1", "six>=1.12.0", "tenacity>=6.1.0"]


def test_etcd3_requirements_met_by_the_pins():
    from packaging.requirements import Requirement
    constraints = {k.lower(): v for k, v in pins(read("constraints.txt")).items()}
    for text in ETCD3_REQUIRES:
        req = Requirement(text)
        assert req.specifier.contains(constraints[req.name.lower()]), text


@pytest.mark.timeout(300)
@pytest.mark.parametrize("python", ["3.11.2", "3.12"])
def test_pins_resolve_for_every_promised_python(python, tmp_path):
    """Debian 12's python3 is 3.11.2, Ubuntu 24.04's is 3.12: pip's resolver, asked about that
    Python, must find every pinned version (and nothing unpinned: the report is compared)."""
    reqs = [r for r in pyproject_requirements() if not r.startswith("etcd3")]
    reqs += [r.split(">=")[0] for r in ETCD3_REQUIRES]
    report = tmp_path / "report.json"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed",
                        "--quiet", "--python-version", python, "--only-binary=:all:",
                        "-c", os.path.join(ROOT, "constraints.txt"), "--report", str(report), *reqs],
                       capture_output=True, text=True, timeout=280)
    assert r.returncode == 0, r.stderr[-3000:]
    got = {i["metadata"]["name"].lower().replace("_", "-"): i["metadata"]["version"]
           for i in json.loads(report.read_text())["install"]}
    pinned = {k.lower().replace("_", "-"): v for k, v in pins(read("constraints.txt")).items()}
    unpinned = sorted(set(got) - set(pinned))
    assert not unpinned, f"resolved for Python {python} but not pinned in constraints.txt: {unpinned}"
    assert set(pinned) - set(got) == {"etcd3"}
