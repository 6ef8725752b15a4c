"""Docker daemon options from subnet.env.

Mirrors ``dist/mk-docker-opts.sh`` of flannel-io/flannel (HEAD). The script
sources subnet.env and writes a small env file (default
``/run/docker_opts.env``) that a docker systemd unit loads, so that dockerd
starts with ``--bip`` inside this node's flannel subnet and with flannel's
MTU. Usage: ``mk-docker-opts.sh [-f env] [-d out] [-i] [-c] [-m] [-k KEY]``.

With neither -i nor -c the script writes both kinds of lines::

    DOCKER_OPT_BIP="--bip=10.1.74.1/24"
    DOCKER_OPT_IPMASQ="--ip-masq=true"
    DOCKER_OPT_MTU="--mtu=1472"
    DOCKER_OPTS=" --bip=10.1.74.1/24 --ip-masq=true --mtu=1472"

The leading space of the combined value is the script's own doing.

Modelled shell: ``/bin/sh`` as the shebang says (dash, or bash in POSIX
mode); both give the output above. Run explicitly as ``bash mk.sh``, bash's
``set`` also lists the script's ``usage`` function, whose help text contains
"DOCKER_OPT_MTU=1500", and junk words end up in the file; that case is not
modelled. (Checked by running the script from flannel HEAD under dash and
``bash --posix``.)
"""

from __future__ import annotations

import re
from ipaddress import IPv4Interface

__all__ = ["DockerOptsError", "docker_opts", "render_docker_opts", "bip_and_mtu", "route_conflict"]


class DockerOptsError(ValueError):
    """The script would print this message to stderr and exit 1."""


def docker_opts(env: dict, *, individual: bool = False, combined: bool = False, no_ipmasq: bool = False,
                key: str = "DOCKER_OPTS") -> dict[str, str]:
    """The variables mk-docker-opts.sh writes, in file order.

    ``env`` is what the script sees after sourcing subnet.env (plus any
    inherited variables). Flags: ``individual`` (-i), ``combined`` (-c),
    ``no_ipmasq`` (-m), ``key`` (-k).

    * DOCKER_OPT_BIP / DOCKER_OPT_MTU only when FLANNEL_SUBNET / FLANNEL_MTU
      are non-empty.
    * DOCKER_OPT_IPMASQ is the *inverse* of FLANNEL_IPMASQ: when flannel
      masquerades pod traffic itself, docker must not do it too.
    * The script finds the options by grepping ``set`` for "DOCKER_OPT_", so
      they come in name order, and any DOCKER_OPT_* variable already in the
      environment is picked up as well.
    * The combined value starts from the current value of KEY (plus a
      space when non-empty) and gets " <value>" appended per option, hence
      the leading space.
    """
    if not individual and not combined:
        individual = combined = True

    variables = {k: str(v) for k, v in env.items() if "DOCKER_OPT_" in k}
    if env.get("FLANNEL_SUBNET"):
        variables["DOCKER_OPT_BIP"] = f"--bip={env['FLANNEL_SUBNET']}"
    if env.get("FLANNEL_MTU"):
        variables["DOCKER_OPT_MTU"] = f"--mtu={env['FLANNEL_MTU']}"
    ipmasq = env.get("FLANNEL_IPMASQ", "")
    if ipmasq and not no_ipmasq:
        if ipmasq == "true":
            variables["DOCKER_OPT_IPMASQ"] = "--ip-masq=false"
        elif ipmasq == "false":
            variables["DOCKER_OPT_IPMASQ"] = "--ip-masq=true"
        else:
            raise DockerOptsError(f"Invalid value of FLANNEL_IPMASQ: {ipmasq}")

    start = str(env.get(key, ""))
    combined_value = start + " " if start else ""
    out: dict[str, str] = {}
    for name in sorted(variables):
        # the script re-reads each value through an unquoted `echo`, which
        # squeezes runs of blanks into one space
        value = " ".join(variables[name].split())
        if individual:
            out[name] = value
        combined_value = f"{combined_value} {value}"
    if combined:
        out[key] = combined_value
    return out


def render_docker_opts(opts: dict) -> str:
    """The file content: one ``NAME="value"`` line per variable, in order
    (values are not escaped, as in the script)."""
    return "".join(f'{name}="{value}"\n' for name, value in opts.items())


def bip_and_mtu(env: dict) -> tuple[IPv4Interface | None, int | None]:
    """What dockerd gets from ``--bip=$FLANNEL_SUBNET --mtu=$FLANNEL_MTU``:
    docker0's address (e.g. 10.1.74.1/24) and its MTU. None for a value
    that is missing or unusable."""
    bip = mtu = None
    try:
        subnet = env.get("FLANNEL_SUBNET") or ""
        if "/" in subnet:
            bip = IPv4Interface(subnet)
    except ValueError:
        bip = None
    try:
        mtu = int(env.get("FLANNEL_MTU") or "")
    except ValueError:
        mtu = None
    return bip, mtu


def route_conflict(env: dict, ip_route_show: str) -> str | None:
    """The script's last check, after the file is already written.

    It rebuilds the subnet from FLANNEL_SUBNET (last octet minus one:
    10.1.74.1/24 -> 10.1.74.0/24), greps ``ip route show`` for it (a regex,
    so its dots match any character) and then for "via". A match means a
    route sends the node's own docker subnet to another host: the script
    prints this message and exits 1. Returns the message or None.
    """
    subnet = env.get("FLANNEL_SUBNET") or ""
    if not subnet:
        return None
    fields = subnet.split(".")
    try:
        last = int(fields[3].split("/")[0]) - 1 if len(fields) > 3 else -1
    except ValueError:
        return None
    rebuilt = f"{'.'.join(fields[:3])}.{last}/{subnet.split('/')[1] if '/' in subnet else subnet}"
    pattern = re.compile(rebuilt)
    hits = [line for line in ip_route_show.splitlines() if pattern.search(line) and "via" in line]
    if not hits:
        return None
    return "Your routing table already contains the subnet: " + "\n".join(hits)
