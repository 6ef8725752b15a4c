"""The classroom's pure parts: names, users files, sizes, addresses, progress rows, CSV, the trainer's page."""
import csv
import io
import json
import os
import subprocess
import sys

import pytest

from labkit.classroom import hub, limits, progress, users
from labkit.errors import LabError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.parametrize("name", ["flab01", "alice", "a_b-c"])
def test_good_names(name):
    assert users.check_name(name) == name


@pytest.mark.parametrize("name", ["", "Root", "1abc", "a b", "a;rm", "-x", "x" * 33, "a.b"])
def test_bad_names(name):
    with pytest.raises(LabError, match="bad user name"):
        users.check_name(name)


@pytest.mark.parametrize("prefix", ["f", "Flab", "flab-", "a" * 17])
def test_bad_prefix(prefix):
    with pytest.raises(LabError, match="bad prefix"):
        users.check_prefix(prefix)


def test_users_file(tmp_path):
    f = tmp_path / "class.txt"
    f.write_text("# the Tuesday class\nalice\n\nbob:s3cret\n")
    assert users.read_users_file(str(f)) == [("alice", None), ("bob", "s3cret")]
    f.write_text("alice\nBob\n")
    with pytest.raises(LabError, match=r"class.txt:2: bad user name 'Bob'"):
        users.read_users_file(str(f))
    f.write_text("carol:\n")
    with pytest.raises(LabError, match="password after ':'"):
        users.read_users_file(str(f))
    f.write_text("# nobody\n")
    with pytest.raises(LabError, match="no user names"):
        users.read_users_file(str(f))


def test_sizes():
    assert limits.parse_size("2G") == 2 << 30 and limits.parse_size("512m") == 512 << 20
    for bad in ("two", "1T", "-1G", "1.5G"):
        with pytest.raises(LabError, match="bad memory size"):
            limits.parse_size(bad)
    with pytest.raises(LabError, match="below 64M"):
        limits.parse_size("10M")


def test_listen_addresses():
    assert hub.check_listen("127.0.0.1") == "127.0.0.1"
    assert hub.check_listen("0.0.0.0") == "0.0.0.0"
    with pytest.raises(LabError, match="not an IP address"):
        hub.check_listen("class.example.org")
    with pytest.raises(LabError, match="no interface of this machine"):
        hub.check_listen("198.51.100.7")   # TEST-NET-2: never an address of this machine


def test_port_range():
    with pytest.raises(LabError, match="1024 to 65532"):
        hub.check_port(80)


def test_rows_summary_and_csv():
    rec = {"version": 1, "scenarios": {
        "udp-8472-blocked": {"attempts": 2, "started_at": 1000.0, "solved_at": 1300.0, "seconds_to_solve": 300.0,
                             "hints_used": 2, "checks_run": 5},
        "mtu-black-hole": {"attempts": 1, "started_at": 1900.0, "hints_used": 1, "checks_run": 1,
                           "solution_shown": True},
        "junk": "not a dict"}}
    rows = progress.rows_for("flab01", rec, now=2500.0)
    assert [r.scenario for r in rows] == ["mtu-black-hole", "udp-8472-blocked"]
    mtu, udp = rows
    assert udp.solved and udp.minutes == 5.0 and udp.hints_used == 2 and udp.started == "1970-01-01 00:16:40"
    assert not mtu.solved and mtu.minutes == 10.0 and mtu.solution_shown   # 10 minutes so far
    s = progress.summary(rows + progress.rows_for("flab02", {}, now=2500.0))
    assert s[0] == {"learner": "flab01", "started": 2, "solved": 1, "hints_used": 3, "minutes_solving": 5.0,
                    "solved_names": ["udp-8472-blocked"]}
    assert s[1]["learner"] == "flab02" and s[1]["started"] == 0
    got = list(csv.DictReader(io.StringIO(progress.to_csv(rows))))
    assert got[1]["scenario"] == "udp-8472-blocked" and got[1]["minutes"] == "5.0" and got[1]["solved"] == "True"
    assert list(got[0]) == progress.FIELDS


def test_bad_records_are_empty_rows():
    row = progress.rows_for("x", {"scenarios": {"a": {"attempts": "many", "started_at": "yesterday"}}})[0]
    assert row.attempts == 0 and row.started == "" and row.minutes is None


def test_trainer_page_escapes_what_learners_wrote():
    pytest.importorskip("jupyterhub")
    from labkit.classroom import trainer
    rows = progress.rows_for("flab01", {"scenarios": {"<script>x</script>": {"attempts": 1}}}, now=1.0)
    page = trainer.render(rows, 1.0)
    assert "<script>x" not in page and "&lt;script&gt;x" in page and 'href="progress.csv"' in page


def test_read_as_someone_else_is_empty_unless_root(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root may read as anyone")
    assert progress.read_as("root") == {}


def test_bad_hub_options_are_one_line_and_change_nothing(tmp_path):
    state = tmp_path / "state"
    for args, msg in [(["--listen", "198.51.100.7"], "no interface of this machine"),
                      (["--memory", "lots"], "bad memory size"),
                      (["--cull-timeout", "5"], "at least 60 seconds"),
                      (["--trainer", "Bad Name"], "bad user name")]:
        r = subprocess.run([sys.executable, "-m", "labkit.cli", "classroom", "hub", "--state", str(state),
                            "--port", "47611", *args],
                           capture_output=True, text=True, cwd=ROOT, timeout=60,
                           env={**os.environ, "PYTHONPATH": ROOT, "LABKIT_CHP": "/bin/true"})
        assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, (args, r.stderr)
        assert msg in r.stderr or "needs root" in r.stderr or "runs as root" in r.stderr, (args, r.stderr)
        assert not state.exists()


def test_settings_round_trip(tmp_path):
    s = hub.Settings(port=18000, trainers=["alice"], state=str(tmp_path / "s"))
    path = hub.prepare_state(s)
    assert hub.load_settings(path) == s
    assert os.stat(tmp_path / "s").st_mode & 0o777 == 0o700
    assert os.stat(tmp_path / "s" / "proxy_token").st_mode & 0o777 == 0o600
    assert json.load(open(path))["ip"] == "127.0.0.1"
