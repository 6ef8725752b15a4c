"""The node's unit files as data: parsing, ordering, Restart=, and mk-docker-opts' output."""
import ipaddress

import pytest

from labkit import units
from labkit.docker import iptables
from labkit.docker.opts import docker_opts, render_docker_opts


def test_parse_keeps_repeated_keys_and_joins_continuations():
    p = units.parse("[Unit]\nAfter=a.service\n# c\nAfter=b.service\n[Service]\nExecStart=/x \\\n  -y\n")
    assert p["Unit"]["After"] == ["a.service", "b.service"]
    assert p["Service"]["ExecStart"] == ["/x    -y"]


def test_flanneld_unit_as_centos7_ships_it_plus_the_labs_restartsec():
    u = units.load("flanneld")
    assert u.description == "Flanneld overlay address etcd agent"
    assert u.before == ["docker"] and {"network.target", "network-online.target", "etcd"} <= set(u.after)
    assert u.restart == "on-failure" and u.restart_sec == 2.0
    assert u.exec_start_post == ["/usr/libexec/flannel/mk-docker-opts.sh -k DOCKER_NETWORK_OPTIONS "
                                 "-d /run/flannel/docker"]
    text = units.cat("flanneld")
    for line in ("Type=notify", "EnvironmentFile=/etc/sysconfig/flanneld", "RequiredBy=docker.service",
                 "WantedBy=multi-user.target", "Wants=network-online.target"):
        assert line in text
    assert "-/run/flannel/docker" in units.load("docker").environment_files


@pytest.mark.parametrize("names,order", [
    (["docker", "flanneld"], ["flanneld", "docker"]),
    (["flanneld", "docker"], ["flanneld", "docker"]),
    (["docker", "flanneld", "etcd"], ["etcd", "flanneld", "docker"]),
    (["docker"], ["docker"]),
])
def test_start_order_comes_from_before_and_after(names, order):
    assert units.start_order(names) == order
    assert units.stop_order(names) == list(reversed(order))


def test_restart_on_failure_like_systemd():
    u = units.Unit("x", restart="on-failure")
    assert u.restarts_after(1, None) and u.restarts_after(None, 9)
    assert not u.restarts_after(0, None) and not u.restarts_after(None, 15)
    assert not units.Unit("y").restarts_after(1, None)       # Restart=no


def test_timespans():
    assert units.parse_timespan("100ms") == pytest.approx(0.1)
    assert units.parse_timespan("2s") == 2.0 and units.parse_timespan("1min 5s") == 65.0
    with pytest.raises(ValueError):
        units.parse_timespan("2 parsecs")


def test_mk_docker_opts_0_7_1_output_for_the_distro_unit():
    env = {"FLANNEL_NETWORK": "10.108.0.0/16", "FLANNEL_SUBNET": "10.108.70.1/24",
           "FLANNEL_MTU": "1450", "FLANNEL_IPMASQ": "false"}
    assert render_docker_opts(docker_opts(env, key="DOCKER_NETWORK_OPTIONS")) == (
        'DOCKER_OPT_BIP="--bip=10.108.70.1/24"\n'
        'DOCKER_OPT_IPMASQ="--ip-masq=true"\n'
        'DOCKER_OPT_MTU="--mtu=1450"\n'
        'DOCKER_NETWORK_OPTIONS=" --bip=10.108.70.1/24 --ip-masq=true --mtu=1450"\n')
    # no subnet.env (flanneld never got a config): the key is written, empty
    assert render_docker_opts(docker_opts({}, key="DOCKER_NETWORK_OPTIONS")) == 'DOCKER_NETWORK_OPTIONS=""\n'


def test_docker_profiles_rules():
    bip = ipaddress.IPv4Interface("10.108.70.1/24")
    legacy = iptables.rules("1.12", bip, True)
    assert ("filter", "FORWARD", ["-j", "DOCKER-ISOLATION"]) == legacy[0]
    assert ("nat", "POSTROUTING", ["-s", "10.108.70.0/24", "!", "-o", "docker0", "-j", "MASQUERADE"]) in legacy
    assert not any(c == "POSTROUTING" for _, c, _ in iptables.rules("1.12", bip, False))
    assert iptables.rules("24.0", bip, True)[0] == ("filter", "FORWARD", ["-j", "DOCKER-USER"])
    assert not iptables.forward_policy_drop("1.12", False)
    assert iptables.forward_policy_drop("1.13", True) and iptables.forward_policy_drop("1.13", False)
    assert iptables.forward_policy_drop("24.0", False) and not iptables.forward_policy_drop("24.0", True)


def test_docker_version_is_validated_with_the_profiles_listed():
    from labkit.errors import LabError
    from labkit.spec import LabSpec
    assert LabSpec(flavour="legacy").docker_profile == "1.12"
    assert LabSpec().docker_profile == "24.0"
    with pytest.raises(LabError) as e:
        LabSpec(docker_version="1.11").validate()
    assert e.value.field == "docker_version" and "1.12" in str(e.value) and "24.0" in str(e.value)
