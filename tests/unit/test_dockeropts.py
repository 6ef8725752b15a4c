"""Tests for labkit.docker.opts (flannel dist/mk-docker-opts.sh)."""

from ipaddress import IPv4Interface

import pytest

from labkit.docker.opts import DockerOptsError, bip_and_mtu, docker_opts, render_docker_opts, route_conflict

# dist/sample_subnet.env
SAMPLE = {"FLANNEL_NETWORK": "10.1.0.0/16", "FLANNEL_SUBNET": "10.1.74.1/24",
          "FLANNEL_MTU": "1472", "FLANNEL_IPMASQ": "false"}


def test_default_writes_individual_and_combined():
    opts = docker_opts(SAMPLE)
    assert list(opts.items()) == [
        ("DOCKER_OPT_BIP", "--bip=10.1.74.1/24"),
        ("DOCKER_OPT_IPMASQ", "--ip-masq=true"),
        ("DOCKER_OPT_MTU", "--mtu=1472"),
        ("DOCKER_OPTS", " --bip=10.1.74.1/24 --ip-masq=true --mtu=1472"),
    ]
    assert render_docker_opts(opts) == (
        'DOCKER_OPT_BIP="--bip=10.1.74.1/24"\n'
        'DOCKER_OPT_IPMASQ="--ip-masq=true"\n'
        'DOCKER_OPT_MTU="--mtu=1472"\n'
        'DOCKER_OPTS=" --bip=10.1.74.1/24 --ip-masq=true --mtu=1472"\n'
    )


def test_individual_only():
    assert docker_opts(SAMPLE, individual=True) == {
        "DOCKER_OPT_BIP": "--bip=10.1.74.1/24",
        "DOCKER_OPT_IPMASQ": "--ip-masq=true",
        "DOCKER_OPT_MTU": "--mtu=1472",
    }


def test_combined_only_with_key():
    # what distro units use: -k DOCKER_NETWORK_OPTIONS
    opts = docker_opts(SAMPLE, combined=True, key="DOCKER_NETWORK_OPTIONS")
    assert opts == {"DOCKER_NETWORK_OPTIONS": " --bip=10.1.74.1/24 --ip-masq=true --mtu=1472"}
    assert render_docker_opts(opts) == 'DOCKER_NETWORK_OPTIONS=" --bip=10.1.74.1/24 --ip-masq=true --mtu=1472"\n'


def test_ipmasq_is_inverted():
    assert docker_opts({**SAMPLE, "FLANNEL_IPMASQ": "true"})["DOCKER_OPT_IPMASQ"] == "--ip-masq=false"
    assert docker_opts({**SAMPLE, "FLANNEL_IPMASQ": "false"})["DOCKER_OPT_IPMASQ"] == "--ip-masq=true"


def test_no_ipmasq_flag():
    opts = docker_opts({**SAMPLE, "FLANNEL_IPMASQ": "bogus"}, no_ipmasq=True)  # -m skips the check too
    assert "DOCKER_OPT_IPMASQ" not in opts
    assert opts["DOCKER_OPTS"] == " --bip=10.1.74.1/24 --mtu=1472"


def test_invalid_ipmasq():
    with pytest.raises(DockerOptsError) as e:
        docker_opts({**SAMPLE, "FLANNEL_IPMASQ": "yes"})
    assert str(e.value) == "Invalid value of FLANNEL_IPMASQ: yes"


def test_existing_key_value_is_prefixed():
    opts = docker_opts({**SAMPLE, "DOCKER_OPTS": "--debug"}, combined=True)
    assert opts == {"DOCKER_OPTS": "--debug  --bip=10.1.74.1/24 --ip-masq=true --mtu=1472"}


def test_missing_values_are_left_out():
    opts = docker_opts({"FLANNEL_MTU": "1450"})
    assert opts == {"DOCKER_OPT_MTU": "--mtu=1450", "DOCKER_OPTS": " --mtu=1450"}
    assert docker_opts({}) == {"DOCKER_OPTS": ""}
    assert render_docker_opts({}) == ""


def test_inherited_docker_opt_vars_are_picked_up_in_name_order():
    opts = docker_opts({**SAMPLE, "DOCKER_OPT_DNS": "--dns=8.8.8.8"}, individual=True)
    assert list(opts) == ["DOCKER_OPT_BIP", "DOCKER_OPT_DNS", "DOCKER_OPT_IPMASQ", "DOCKER_OPT_MTU"]


def test_bip_and_mtu():
    assert bip_and_mtu(SAMPLE) == (IPv4Interface("10.1.74.1/24"), 1472)
    assert bip_and_mtu({}) == (None, None)
    assert bip_and_mtu({"FLANNEL_SUBNET": "10.1.74.1", "FLANNEL_MTU": "x"}) == (None, None)
    assert bip_and_mtu({"FLANNEL_SUBNET": "bad/24", "FLANNEL_MTU": "1450"}) == (None, 1450)


def test_route_conflict():
    routes = ("default via 192.168.0.1 dev eth0\n"
              "10.1.74.0/24 via 192.168.0.7 dev eth0\n"
              "10.1.0.0/16 dev flannel.1\n")
    assert route_conflict(SAMPLE, routes) == \
        "Your routing table already contains the subnet: 10.1.74.0/24 via 192.168.0.7 dev eth0"
    assert route_conflict(SAMPLE, "10.1.74.0/24 dev docker0 proto kernel scope link src 10.1.74.1\n") is None
    assert route_conflict({}, routes) is None
