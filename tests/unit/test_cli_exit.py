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


def test_a_closed_pipe_ends_a_node_command_quietly():
    """`docker ps -q | head -1` in a node: the shims (docker, systemctl, journalctl) end as a C
    program ends on SIGPIPE, 141 and no traceback."""
    p = subprocess.Popen([sys.executable, "-m", "labkit.shims.docker", "--help"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=ENV)
    p.stdout.close()   # before the shim writes anything
    err = p.stderr.read().decode()
    assert p.wait(timeout=60) == 141
    assert err == ""


def test_a_bug_in_a_node_command_is_one_line():
    """An exception that is not a LabError (a bug) gives one line naming the command, and the
    traceback only with LABKIT_DEBUG=1, as `labkit` does."""
    code = ("import sys; from labkit.shims import run\n"
            "def main(argv): raise KeyError('boom')\n"
            "main.__module__ = 'labkit.shims.docker'\n"
            "run(main)\n")
    quiet = {k: v for k, v in ENV.items() if k != "LABKIT_DEBUG"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=quiet, timeout=60)
    assert r.returncode == 1
    assert r.stderr == "docker: internal error: KeyError: 'boom' (LABKIT_DEBUG=1 shows the traceback)\n"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={**ENV, "LABKIT_DEBUG": "1"}, timeout=60)
    assert "Traceback" in r.stderr and r.returncode == 1
