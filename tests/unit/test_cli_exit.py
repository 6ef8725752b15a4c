"""How the `labkit` command leaves: cli.finish (quick exit) keeps output and exit codes."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENV = {**os.environ, "PYTHONPATH": ROOT}


def labkit(*args, **kw):
    return subprocess.run([sys.executable, "-m", "labkit", *args], capture_output=True, text=True, env=ENV,
                          timeout=60, **kw)


def test_output_and_codes_survive_the_quick_exit():
    r = labkit("versions", "--markdown")
    assert r.returncode == 0 and r.stderr == ""
    assert r.stdout.count("\n") > 20 and r.stdout.rstrip().endswith("|")   # all of it, flushed
    r = labkit("status", "--name", "nosuch1")
    assert r.returncode == 1 and "no lab named 'nosuch1'" in r.stderr
    assert labkit("no-such-verb").returncode == 2


def test_a_closed_pipe_is_not_an_error():
    """`labkit versions | head -1`: the reader goes away; labkit stops quietly with 141 (SIGPIPE's
    status in a shell), not an "internal error"."""
    p = subprocess.Popen([sys.executable, "-m", "labkit", "versions", "--markdown"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=ENV)
    p.stdout.close()   # before labkit writes anything
    err = p.stderr.read().decode()
    assert p.wait(timeout=60) == 141
    assert err == ""
