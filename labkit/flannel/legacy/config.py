"""ParseConfig as flannel 0.7.1 did it (mirrors v0.7.1:subnet/config.go).

The JSON is decoded exactly as today (Go encoding/json); the rules after it are older
and looser: no minimum network size, and SubnetLen defaults to prefix+1 for small
networks ("half the network").
"""
from __future__ import annotations

from ipaddress import IPv4Address

from ..config import Config, ConfigError, decode_config


def parse_config(text: str | bytes) -> Config:
    cfg = decode_config(text)
    net = cfg.network
    if net is None:  # Go's zero IP4Net: 0.0.0.0/0
        from ipaddress import IPv4Network
        net = cfg.network = IPv4Network("0.0.0.0/0")
    if cfg.subnet_len:
        if cfg.subnet_len < net.prefixlen:
            raise ConfigError("HostSubnet is larger network than Network")
    else:
        cfg.subnet_len = 24 if net.prefixlen < 24 else net.prefixlen + 1
    size = 1 << (32 - cfg.subnet_len)
    zero = IPv4Address(0)
    if cfg.subnet_min in (None, zero):
        cfg.subnet_min = net.network_address + size
    elif cfg.subnet_min not in net:
        raise ConfigError("SubnetMin is not in the range of the Network")
    if cfg.subnet_max in (None, zero):
        cfg.subnet_max = IPv4Address(int(net.broadcast_address) + 1 - size)
    elif cfg.subnet_max not in net:
        raise ConfigError("SubnetMax is not in the range of the Network")
    return cfg
