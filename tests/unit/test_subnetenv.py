"""Tests for labkit.flannel.subnetenv (flannel WriteSubnetFile / ReadCIDRFromSubnetFile)."""

import os
import stat
from ipaddress import IPv4Network, IPv6Network

import pytest

from labkit.flannel import subnetenv
from labkit.flannel.subnetenv import (
    format_subnet_file,
    previous_subnet,
    read_cidr,
    read_subnet_file,
    write_subnet_file,
)

N = IPv4Network


def test_format_exact():
    text = format_subnet_file(N("10.5.0.0/16"), N("10.5.72.0/24"), 1450, False)
    assert text == ("FLANNEL_NETWORK=10.5.0.0/16\n"
                    "FLANNEL_SUBNET=10.5.72.1/24\n"
                    "FLANNEL_MTU=1450\n"
                    "FLANNEL_IPMASQ=false\n")


def test_format_ipmasq_true_and_small_subnet():
    text = format_subnet_file(N("10.9.0.0/28"), N("10.9.0.8/30"), 1472, True)
    assert text == "FLANNEL_NETWORK=10.9.0.0/28\nFLANNEL_SUBNET=10.9.0.9/30\nFLANNEL_MTU=1472\nFLANNEL_IPMASQ=true\n"


def test_format_dual_stack_order():
    text = format_subnet_file(N("10.5.0.0/16"), N("10.5.72.0/24"), 1450, False,
                              IPv6Network("fd00::/56"), IPv6Network("fd00:0:0:5::/64"))
    assert text.splitlines() == [
        "FLANNEL_NETWORK=10.5.0.0/16",
        "FLANNEL_SUBNET=10.5.72.1/24",
        "FLANNEL_IPV6_NETWORK=fd00::/56",
        "FLANNEL_IPV6_SUBNET=fd00:0:0:5::1/64",
        "FLANNEL_MTU=1450",
        "FLANNEL_IPMASQ=false",
    ]


def test_format_ipv6_only():
    text = format_subnet_file(None, None, 1430, False, IPv6Network("fd00::/56"), IPv6Network("fd00:0:0:5::/64"))
    assert text.startswith("FLANNEL_IPV6_NETWORK=fd00::/56\n")
    assert "FLANNEL_NETWORK" not in text


def test_write_creates_dirs_and_mode(tmp_path):
    path = tmp_path / "run" / "flannel" / "subnet.env"
    old = os.umask(0o077)
    try:
        write_subnet_file(path, N("10.5.0.0/16"), N("10.5.72.0/24"), 1450, False)
    finally:
        os.umask(old)
    assert path.read_text() == format_subnet_file(N("10.5.0.0/16"), N("10.5.72.0/24"), 1450, False)
    # 0644 whatever the umask (renameio.IgnoreUmask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert path.parent.is_dir()
    assert os.listdir(path.parent) == ["subnet.env"]


def test_write_dir_mode_0755(tmp_path):
    path = tmp_path / "newdir" / "subnet.env"
    old = os.umask(0o022)
    try:
        write_subnet_file(str(path), N("10.5.0.0/16"), N("10.5.72.0/24"), 1450, False)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o755


def test_write_replaces_atomically(tmp_path, monkeypatch):
    path = tmp_path / "subnet.env"
    write_subnet_file(path, N("10.5.0.0/16"), N("10.5.72.0/24"), 1450, False)
    inode_before = path.stat().st_ino
    write_subnet_file(path, N("10.5.0.0/16"), N("10.5.9.0/24"), 1450, True)
    assert "FLANNEL_SUBNET=10.5.9.1/24\n" in path.read_text()
    assert path.stat().st_ino != inode_before  # a new file was renamed in

    # if the rename fails the old file is untouched and no temp file is left
    def boom(src, dst):
        raise OSError("rename failed")

    monkeypatch.setattr(subnetenv.os, "replace", boom)
    with pytest.raises(OSError, match="rename failed"):
        write_subnet_file(path, N("10.5.0.0/16"), N("10.5.200.0/24"), 1450, False)
    assert "FLANNEL_SUBNET=10.5.9.1/24\n" in path.read_text()
    assert os.listdir(tmp_path) == ["subnet.env"]


def test_read_back(tmp_path):
    path = tmp_path / "subnet.env"
    write_subnet_file(path, N("10.5.0.0/16"), N("10.5.72.0/24"), 1450, True)
    assert read_subnet_file(path) == {"FLANNEL_NETWORK": "10.5.0.0/16", "FLANNEL_SUBNET": "10.5.72.1/24",
                                      "FLANNEL_MTU": "1450", "FLANNEL_IPMASQ": "true"}
    assert previous_subnet(path) == N("10.5.72.0/24")
    assert read_cidr(path, "FLANNEL_NETWORK") == N("10.5.0.0/16")


def test_read_is_tolerant(tmp_path):
    path = tmp_path / "subnet.env"
    path.write_text('# written by hand\n\nexport FLANNEL_SUBNET="10.1.74.1/24"\n'
                    "FLANNEL_MTU='1472'\nFLANNEL_IPMASQ=false # comment\ngarbage line\n"
                    "  FLANNEL_NETWORK = 10.1.0.0/16\n")
    assert read_subnet_file(path) == {"FLANNEL_SUBNET": "10.1.74.1/24", "FLANNEL_MTU": "1472",
                                      "FLANNEL_IPMASQ": "false", "FLANNEL_NETWORK": "10.1.0.0/16"}
    assert previous_subnet(path) == N("10.1.74.0/24")


@pytest.mark.parametrize("content,expected", [
    ("FLANNEL_SUBNET=10.5.72.1/24\n", N("10.5.72.0/24")),
    ("FLANNEL_SUBNET=10.5.72.1/24,garbage\n", N("10.5.72.0/24")),   # bad entries skipped
    ("FLANNEL_SUBNET=10.5.72.1/24,10.6.1.1/24\n", None),            # more than one entry
    ("FLANNEL_SUBNET=10.5.72.1\n", None),                           # not a CIDR
    ("FLANNEL_SUBNET=\n", None),
    ("FLANNEL_NETWORK=10.5.0.0/16\n", None),                        # key missing
    ("FLANNEL_SUBNET=fd00::1/64\n", None),
])
def test_previous_subnet_cases(tmp_path, content, expected):
    path = tmp_path / "subnet.env"
    path.write_text(content)
    assert previous_subnet(path) == expected


def test_previous_subnet_missing_or_unreadable(tmp_path):
    assert previous_subnet(tmp_path / "nope.env") is None
    assert previous_subnet(tmp_path) is None  # a directory
