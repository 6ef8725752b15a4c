"""`docker ps` in a node: --format (with docker's field names and `table`), --filter, -q."""
import time

import pytest

from labkit.docker.containers import Container
from labkit.errors import LabError
from labkit.shims import docker


def _recs():
    now = time.time()
    up = Container(name="c1", id="ab" * 32, image="busybox", node="n", netns="x", command=["sh"],
                   created=now - 300, started=now - 300, running=True)
    down = Container(name="eager_cerf", id="cd" * 32, image="busybox", node="n", netns="y",
                     command=["sleep", "infinity", "and", "beyond"], created=now - 30)
    return up, down


def test_format_uses_dockers_field_names_and_escapes():
    rows = [docker.ps_fields(r) for r in _recs()]
    assert docker.render_ps(rows, "{{.Names}}") == "c1\neager_cerf"
    assert docker.render_ps(rows, r"{{.ID}}\t{{.State}}") == f"{'ab' * 6}\trunning\n{'cd' * 6}\texited"
    assert docker.render_ps(rows, r"table {{.Names}}\t{{.Status}}").splitlines() == [
        "NAMES        STATUS", "c1           Up 5 minutes", "eager_cerf   Exited (137)"]
    assert rows[1]["Command"] == '"sleep infinity an…"'
    assert docker.ps_fields(_recs()[1], no_trunc=True)["Command"] == '"sleep infinity and beyond"'


def test_the_default_table_is_dockers():
    out = docker.render_ps([docker.ps_fields(_recs()[0])], docker.PS_DEFAULT).splitlines()
    assert out[0].split() == ["CONTAINER", "ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]
    assert out[0].index("IMAGE") == len("abababababab   ")   # columns as wide as their widest cell, 3 apart
    assert out[1].startswith("abababababab   busybox   \"sh\"      5 minutes ago   Up 5 minutes")


def test_filters():
    up, down = _recs()
    assert [docker.ps_filter(f)(r) for f in (["name=eager"], ["status=exited"], ["id=abab"],
                                             ["name=c1", "name=cerf"], ["name=c1", "status=exited"])
            for r in (up, down)] == [False, True, False, True, True, False, True, True, False, False]
    with pytest.raises(LabError, match="invalid filter 'label=x'"):
        docker.ps_filter(["label=x"])
    with pytest.raises(LabError, match="invalid filter 'name'"):
        docker.ps_filter(["name"])


def test_an_ended_command_shows_its_status_and_a_pending_restart_is_restarting():
    import dataclasses
    _, down = _recs()
    ended = dataclasses.replace(down, exit_code=3)
    waiting = dataclasses.replace(down, exit_code=1, restart="on-failure", restart_at=time.time() + 0.4)
    assert docker.ps_fields(ended)["Status"] == "Exited (3)" and docker.ps_fields(ended)["State"] == "exited"
    assert (docker.ps_fields(waiting)["Status"], docker.ps_fields(waiting)["State"]) == ("Restarting (1)", "restarting")
    assert docker.ps_fields(down)["Status"] == "Exited (137)"    # stopped by docker stop (no status kept)
    assert [docker.ps_filter([f])(r) for f in ("status=restarting", "status=exited") for r in (ended, waiting)] == \
        [False, True, True, False]
