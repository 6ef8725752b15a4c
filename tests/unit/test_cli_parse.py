"""How `labkit` reads its command lines (no lab needed)."""
import pytest

from labkit.cli import build_parser


@pytest.mark.parametrize("argv", [
    ["capture", "master", "eth0", "udp", "port", "8472", "-c", "5"],      # filter, then options
    ["capture", "master", "eth0", "-c", "5", "udp", "port", "8472"],      # tcpdump's order: options, then filter
    ["capture", "-c", "5", "master", "eth0", "udp", "port", "8472"],
])
def test_a_capture_filter_may_follow_the_options(argv):
    a = build_parser().parse_args(argv)
    assert (a.target, a.iface, a.filter, a.count) == ("master", "eth0", ["udp", "port", "8472"], 5)


def test_a_capture_without_a_filter_and_a_missing_interface(capsys):
    a = build_parser().parse_args(["capture", "node1", "flannel.1", "--ping", "master/c1", "node1/c1"])
    assert a.filter == [] and a.ping == ["master/c1", "node1/c1"]
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["capture", "master"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "required: iface (" in err and len(err.splitlines()) == 1


def test_bench_scale_takes_the_scripts_pings(capsys):
    """`labkit bench scale --pings N` as bench/bench_scale.py takes it (it was 'unrecognized')."""
    assert build_parser().parse_args(["bench", "scale", "--pings", "0"]).pings == 0
    assert build_parser().parse_args(["bench", "scale"]).pings == 10
    with pytest.raises(SystemExit):
        build_parser().parse_args(["bench", "scale", "--pings", "1001"])
    assert "give a number from 0 to 1000" in capsys.readouterr().err
