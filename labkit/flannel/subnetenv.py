"""subnet.env: the file flanneld leaves for docker and CNI.

Mirrors ``WriteSubnetFile`` in ``pkg/subnet/subnet.go`` (writing) and
``ReadCIDRFromSubnetFile`` in ``main.go`` (reading ``FLANNEL_SUBNET`` back
at start-up, to ask for the same subnet again) of flannel-io/flannel (HEAD).

Example for the etcd manager (written once, after the lease is acquired)::

    FLANNEL_NETWORK=10.5.0.0/16
    FLANNEL_SUBNET=10.5.72.1/24
    FLANNEL_MTU=1450
    FLANNEL_IPMASQ=false
"""

from __future__ import annotations

import os
import tempfile
from ipaddress import IPv4Network, IPv6Network

from labkit.flannel.config import go_parse_cidr

# a file name, as str or pathlib.Path
StrPath = str | os.PathLike[str]

__all__ = ["format_subnet_file", "write_subnet_file", "read_subnet_file", "read_cidr", "previous_subnet"]


def _first_address(subnet: IPv4Network | IPv6Network) -> str:
    # flannel increments the lease's network address by one and keeps the
    # lease prefix: 10.5.72.0/24 -> 10.5.72.1/24 (the address docker0 gets)
    return f"{subnet.network_address + 1}/{subnet.prefixlen}"


def format_subnet_file(network: IPv4Network | None, lease_subnet: IPv4Network | None, mtu: int, ipmasq: bool,
                       ipv6_network: IPv6Network | None = None, ipv6_subnet: IPv6Network | None = None) -> str:
    """The text WriteSubnetFile produces, lines in flannel's order.

    IPv4 lines are written when a network is given (flannel: EnableIPv4),
    IPv6 lines when an IPv6 network is given (EnableIPv6). IPMASQ is Go's
    %t: ``true``/``false``.
    """
    text = ""
    if network is not None:
        assert lease_subnet is not None, "an IPv4 network comes with the lease's subnet"
        text += f"FLANNEL_NETWORK={network}\nFLANNEL_SUBNET={_first_address(lease_subnet)}\n"
    if ipv6_network is not None:
        assert ipv6_subnet is not None, "an IPv6 network comes with the lease's IPv6 subnet"
        text += f"FLANNEL_IPV6_NETWORK={ipv6_network}\nFLANNEL_IPV6_SUBNET={_first_address(ipv6_subnet)}\n"
    text += f"FLANNEL_MTU={int(mtu)}\nFLANNEL_IPMASQ={'true' if ipmasq else 'false'}\n"
    return text


def write_subnet_file(path: StrPath, network: IPv4Network | None, lease_subnet: IPv4Network | None, mtu: int,
                      ipmasq: bool, ipv6_network: IPv6Network | None = None,
                      ipv6_subnet: IPv6Network | None = None) -> None:
    """Write subnet.env atomically, as flannel does with renameio.

    Why atomic: docker (or mk-docker-opts.sh) may read the file at any
    moment; a temp file in the same directory renamed over the old one
    means readers see either the old or the new file, never half of one.
    The directory is created with 0755 (subject to umask, like Go's
    MkdirAll); the file gets 0644 whatever the umask.
    """
    path = os.fspath(path)
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, mode=0o755, exist_ok=True)
    data = format_subnet_file(network, lease_subnet, mtu, ipmasq, ipv6_network, ipv6_subnet).encode()
    fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o644)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    # an unquoted value may carry a trailing " # comment" (as godotenv allows)
    for marker in (" #", "\t#"):
        if marker in value:
            value = value.split(marker, 1)[0].rstrip()
    return value


def read_subnet_file(path: StrPath) -> dict[str, str]:
    """Read KEY=VALUE lines (flannel uses godotenv for this).

    Tolerant on purpose: blank lines and ``#`` comments are skipped, an
    ``export`` prefix is allowed, surrounding quotes are removed, lines
    without '=' are ignored. Raises OSError if the file cannot be read.
    """
    env: dict[str, str] = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("export "):
                line = line[len("export "):].lstrip()
            key, sep, value = line.partition("=")
            if not sep or not key.strip():
                continue
            env[key.strip()] = _unquote(value.strip())
    return env


def read_cidr(path: StrPath, key: str) -> IPv4Network | None:
    """ReadCIDRFromSubnetFile: the one IPv4 CIDR stored under ``key``.

    Like Go's net.ParseCIDR the host bits are dropped (10.5.72.1/24 gives
    10.5.72.0/24). The value may be a comma-separated list; unparsable
    entries are skipped, and flannel uses the value only when exactly one
    entry is left. None when the file or key is missing. (An IPv6 entry
    would crash flanneld; here it is skipped.)
    """
    try:
        env = read_subnet_file(path)
    except (OSError, UnicodeError):
        return None
    if key not in env:
        return None
    found: list[IPv4Network] = []
    for item in env[key].split(","):
        try:
            net = go_parse_cidr(item)
        except ValueError:
            continue
        if isinstance(net, IPv4Network):
            found.append(net)
    return found[0] if len(found) == 1 else None


def previous_subnet(path: StrPath) -> IPv4Network | None:
    """The subnet this node held before a restart (``FLANNEL_SUBNET``).

    flanneld passes it to the subnet manager, which tries to get the same
    subnet back when no lease carries our PublicIP any more.
    """
    return read_cidr(path, "FLANNEL_SUBNET")
