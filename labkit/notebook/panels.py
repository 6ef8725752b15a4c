"""What the config panel computes and does, as plain functions (no ipywidgets here).

The live checks of the form (flannel's own error text) and the backend list with the
reason a backend is unavailable. Apply itself is ``Lab.plan``/``Lab.reconfigure``: the
panel shows the plan and the progress, so it cannot drift from what the CLI does.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypedDict

from ..errors import LabError
from ..flannel.backends import catalogue
from ..flannel.config import (
    ConfigError,
    parse_config,
    subnet_len_bounds,
    unknown_backend_message,
    validate_network_cidr,
)

if TYPE_CHECKING:
    from ..spec import LabSpec

MAX_PANEL_NODES = 8


# -- the config form ---------------------------------------------------------------------------
def backend_choices() -> list[tuple[str, bool, str]]:
    """Every backend flannel knows: (name, usable in this lab, why not); see the catalogue."""
    return [(c.name, c.usable, c.why) for c in catalogue.backend_choices()]


class FormValues(TypedDict):
    """The config form's fields, as make_spec and check_form take them (keywords)."""
    network: str
    subnet_len: int | None
    backend: str
    vni: int | None
    port: int | None
    direct_routing: bool
    nodes: int


@dataclass
class FormCheck:

    """The result of checking the form: per-field errors, the config, what flannel derives."""
    errors: dict[str, str] = field(default_factory=dict)      # field -> message
    config: dict[str, Any] | None = None
    config_json: str = ""
    subnet_len_bounds: tuple[int, int] | None = None          # (min, max) SubnetLen for this Network
    effective_subnet_len: int | None = None         # what flannel will use (default filled in)
    subnets: int | None = None                      # how many subnets SubnetMin..SubnetMax hold
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def make_spec(lab_spec: LabSpec, *, network: str, subnet_len: int | None, backend: str, vni: int | None,
              port: int | None, direct_routing: bool, nodes: int) -> LabSpec:
    """The lab's spec with the form's values (None/0 SubnetLen, VNI, Port = flannel's default)."""
    if not vni or (vni == 1 and lab_spec.vni is None):
        vni = None                      # flannel's default VNI 1: not written to the config
    return dataclasses.replace(
        lab_spec, network=network, subnet_len=subnet_len or None, backend=backend, vni=vni,
        port=port or None, direct_routing=bool(direct_routing), nodes=nodes)


def check_form(lab_spec: LabSpec, *, network: str,
 subnet_len: int | None, backend: str, vni: int | None,
               port: int | None, direct_routing: bool, nodes: int) -> FormCheck:
    """Check the form as the user types: flannel's messages, field by field."""
    res = FormCheck()
    net = None
    try:
        net = validate_network_cidr(network)
        res.subnet_len_bounds = subnet_len_bounds(net)
    except ConfigError as e:
        res.errors["network"] = str(e)
    choices = {name: (ok, why) for name, ok, why in backend_choices()}
    if backend not in choices:
        res.errors["backend"] = unknown_backend_message(backend)
    elif not choices[backend][0]:
        res.errors["backend"] = choices[backend][1]
    spec = make_spec(lab_spec, network=network, subnet_len=subnet_len, backend=backend, vni=vni,
                     port=port, direct_routing=direct_routing, nodes=nodes)
    res.config = spec.network_config()
    res.config_json = spec.network_config_json()
    if net is not None:
        try:
            cfg = parse_config(res.config_json)
            res.effective_subnet_len = cfg.subnet_len
            size = 1 << (32 - cfg.subnet_len)
            assert cfg.subnet_min is not None and cfg.subnet_max is not None  # parse_config fills them in
            res.subnets = (int(cfg.subnet_max) - int(cfg.subnet_min)) // size + 1
        except ConfigError as e:
            res.errors["subnet_len" if subnet_len else "network"] = str(e)
    if not res.errors:
        try:
            spec.validate()
        except LabError as e:
            msg = str(e)
            key = ("vni" if "VNI" in msg else "port" if msg.startswith("port") else
                   "backend" if msg.startswith(("backend", "unknown backend")) else
                   "nodes" if "nodes" in msg else "network")
            res.errors[key] = msg
    if res.subnets is not None and nodes > res.subnets and not res.errors:
        res.errors["nodes"] = (f"{nodes} nodes but this Network has {res.subnets} subnet(s) "
                               f"(the first one is never used): flanneld on the extra node exits "
                               f"with 'failed to acquire lease: out of subnets'")
    return res


def etcdctl_command(prefix: str, config_json: str) -> str:
    """What a user types on the master to do what Apply does first."""
    return f"etcdctl put {prefix}/config '{config_json}'"

