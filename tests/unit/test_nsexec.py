"""labkit.nsexec's pure parts, that it stays a standard-library-only script, and state.fs_type."""
import os
import subprocess
import sys

import pytest

from labkit import netns, nsexec


@pytest.mark.parametrize("field, path", [
    ("/run/netns/lab-node1", "/run/netns/lab-node1"),
    (r"/mnt/with\040space", "/mnt/with space"),
    (r"/a\011tab\012newline", "/a\ttab\nnewline"),
    (r"/back\134slash\134", "/back\\slash\\"),
    (r"/not\08octal", r"/not\08octal"),          # not three octal digits: left as it is
    (r"/short\04", r"/short\04"),
])
def test_mountinfo_paths_are_unescaped_as_the_kernel_escapes_them(field, path):
    assert nsexec.unescape(field) == path


def test_each_overlay_gets_a_new_empty_work_dir(tmp_path):
    made = {nsexec._work_dir(str(tmp_path)) for _ in range(50)}
    assert len(made) == 50
    for d in made:
        assert os.path.dirname(d) == str(tmp_path) and os.path.basename(d).startswith("w")
        assert os.listdir(d) == [] and (os.stat(d).st_mode & 0o777) == 0o700


def test_nsexec_runs_isolated_without_site_packages():
    """netns.nsexec_argv starts nsexec with -I -S: it must import nothing outside the standard
    library (no labkit package, no site-packages). Its usage line proves it started."""
    argv = netns.nsexec_argv("x", [])[:4]
    assert argv[1:3] == ["-I", "-S"] and argv[3] == nsexec.__file__
    r = subprocess.run([*argv], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and r.stderr.startswith("Usage:") and "NETNS" in r.stderr, r.stderr
    probe = ("import runpy, sys; runpy.run_path(sys.argv[1], run_name='nsexec');"
             "bad = [m for m in sys.modules if m.split('.')[0] in ('labkit', 'pyroute2', 'grpc', 'etcd3')];"
             "print(bad)")
    r = subprocess.run([sys.executable, "-I", "-S", "-c", probe, nsexec.__file__], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stderr


def test_fs_type_is_that_of_the_deepest_mount_above_a_path():
    from labkit.state import fs_type
    assert fs_type("/proc/self/status") == "proc"
    assert fs_type("/proc") == "proc"
    assert fs_type("/sys/class/net") in ("sysfs", "")        # "" only where mountinfo is unreadable
    assert fs_type("/") != "proc" and fs_type("/no/such/folder/yet") == fs_type("/")


def test_a_sandboxed_node_keeps_the_venv_it_runs_from():
    """nsexec runs with -S, where sys.prefix is the base Python's, not the venv's: the venv
    must still be among the paths bound back over the hidden homes (nsexec._needed)."""
    probe = "import runpy, sys; print(runpy.run_path(sys.argv[1], run_name='nsexec')['_needed']())"
    r = subprocess.run([sys.executable, "-I", "-S", "-c", probe, nsexec.__file__], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    needed = r.stdout
    assert os.path.realpath(sys.prefix) in needed, (sys.prefix, needed)


def test_the_view_options_nsexec_and_the_zygote_read():
    assert nsexec.parse_view(["--bind", "/a:/run/flannel", "--etc", "/u:/w", "--hostname", "node1",
                              "--bind", "/b:/c"]) == ([("/a", "/run/flannel"), ("/b", "/c")], ("/u", "/w"), "node1")
    assert nsexec.parse_view([]) == ([], None, None)
    for bad in (["--bogus", "x"], ["--bind"], ["/a:/b"]):
        with pytest.raises(ValueError, match="unexpected argument"):
            nsexec.parse_view(bad)


@pytest.mark.parametrize("argv", [["--", "true"], [], ["lab-node1", "true"], ["lab-node1", "--bind", "--", "true"]])
def test_bad_nsexec_command_lines_get_one_line_and_status_2(argv, capsys):
    assert nsexec.main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
