"""environment.yml, pyproject.toml and constraints.txt pin the same versions; CI runs the README's command."""
import os
import re

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
