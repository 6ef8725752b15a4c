"""ipywidgets for the notebooks: thin layers over the Lab, :mod:`.panels` and :mod:`.tables`.

* :class:`ConfigPanel`: the network config as a form, checked live with flannel's own
  error text; **Apply** is ``lab.reconfigure``: the panel shows ``lab.plan`` as a
  progress bar, then the result table.
* :class:`LabView`: per node, the etcd lease beside the ARP, FDB and route entries it
  produced, refreshed on demand.
* :class:`CapturePanel`: capture on any interface of a node or container while a ping
  runs; the decoded table, one packet's layers, the pcap file.
* :class:`ConnectivityMatrix`: the all-pairs ping matrix as a coloured grid.
* :class:`Predict` (from :mod:`.predict`): "predict, then run": a question, Commit, then the answer.

Every panel also has a method that does what its button does (``apply()``, ``refresh()``,
``run()``, ``check()``), so a cell can drive it and print the result as text.
"""
from __future__ import annotations

import html
import os
from typing import Any

import ipywidgets as W

from .. import capture as cap
from ..errors import LabError
from ..flannel.config import default_subnet_len, subnet_len_bounds, validate_network_cidr
from ..lab import Lab, ReconfigureResult
from . import panels, tables
from .predict import Predict
from .session import current

__all__ = ["CapturePanel", "ConfigPanel", "ConnectivityMatrix", "LabView", "Predict"]

WIDE = {"description_width": "110px"}


def _lab(lab: Lab | None) -> Lab:
    if lab is not None:
        return lab
    return current()


def _error_html(msg: str) -> str:
    return f"<span class='labkit-error' style='color:#cf222e'>{html.escape(msg)}</span>"


class ConfigPanel(W.VBox):
    """Network, SubnetLen, backend, VNI, port, DirectRouting and node count; Apply."""

    def __init__(self, lab: Lab | None = None) -> None:
        self.lab = _lab(lab)
        spec = self.lab.spec
        self.network = W.Text(value=spec.network, description="Network", style=WIDE,
                              continuous_update=True, layout=W.Layout(width="320px"))
        self.subnet_len = W.Dropdown(description="SubnetLen", style=WIDE, layout=W.Layout(width="320px"))
        self._backend = spec.backend
        self.backend_buttons: dict[str, Any] = {}     # backend name -> its W.ToggleButton
        for name, ok, why in panels.backend_choices():
            b = W.ToggleButton(value=(name == spec.backend), description=name, disabled=not ok,
                               tooltip=("" if ok else why), layout=W.Layout(width="auto"))
            b.observe(self._on_backend, names="value")
            self.backend_buttons[name] = b
        unavailable = [f"<b>{html.escape(n)}</b>" for n, ok, _ in panels.backend_choices() if not ok]
        self.backend_note = W.HTML(
            f"<small>greyed out ({', '.join(unavailable)}): not available in this lab; "
            "hover for the reason</small>" if unavailable else "")
        self.vni = W.IntText(value=spec.vni or 1, description="VNI", style=WIDE, layout=W.Layout(width="220px"))
        self.port = W.IntText(value=spec.port or 0, description="Port", style=WIDE,
                              layout=W.Layout(width="220px"), tooltip="0 = the kernel's default, 8472")
        self.direct_routing = W.Checkbox(value=spec.direct_routing, description="DirectRouting",
                                         indent=False)
        self.nodes = W.BoundedIntText(value=spec.nodes, min=1, max=panels.MAX_PANEL_NODES,
                                      description="nodes", style=WIDE, layout=W.Layout(width="220px"))
        self.errors = W.HTML()
        self.preview = W.HTML()
        self.apply_button = W.Button(description="Apply", button_style="primary", icon="check")
        self.apply_button.on_click(lambda _b: self.apply_clicked())
        self.progress = W.IntProgress(value=0, min=0, max=1, description="", layout=W.Layout(width="320px"))
        self.step = W.HTML()
        self.result = W.HTML()
        for w in (self.network, self.subnet_len, self.vni, self.port, self.direct_routing, self.nodes):
            w.observe(lambda _c: self.check(), names="value")
        self._fill_subnet_len(spec.subnet_len or 0)
        super().__init__([
            W.HTML(f"<b>flannel network config</b> of lab <code>{html.escape(spec.name)}</code> "
                   f"(etcd key <code>{html.escape(spec.prefix)}/config</code>)"),
            self.network, self.subnet_len,
            W.HBox([W.Label("Backend", layout=W.Layout(width="110px"))] + list(self.backend_buttons.values())),
            self.backend_note, W.HBox([self.vni, self.port]), W.HBox([self.direct_routing, self.nodes]),
            self.errors, self.preview, W.HBox([self.apply_button, self.progress]), self.step, self.result,
        ], layout=W.Layout(border="1px solid #d0d7de", padding="8px"))
        self.add_class("labkit-config-panel")
        self.check()
        self.result.value = tables.result_html(self.lab.status())

    def __repr__(self) -> str:
        return f"ConfigPanel(lab {self.lab.spec.name}: {tables.config_summary(self.lab.spec)})"

    # -- the form ----------------------------------------------------------------------------
    @property
    def backend(self) -> str:
        return self._backend

    @backend.setter
    def backend(self, name: str) -> None:
        if name in self.backend_buttons and self.backend_buttons[name].disabled:
            raise LabError(self.backend_buttons[name].tooltip)
        self._backend = name
        for n, b in self.backend_buttons.items():
            b.value = (n == name)
        self.check()

    def _on_backend(self, change: dict[str, Any]) -> None:
        if change["new"]:
            self.backend = change["owner"].description
        elif change["owner"].description == self._backend:
            change["owner"].value = True   # one backend is always chosen

    def _fill_subnet_len(self, keep: int) -> None:
        try:
            net = validate_network_cidr(self.network.value)
            lo, hi = subnet_len_bounds(net)
            options = [(f"default (/{default_subnet_len(net)})", 0)] + [(f"/{n}", n) for n in range(lo, hi + 1)]
        except Exception:
            options = [("default", 0)]
        values = [v for _, v in options]
        self.subnet_len.options = options
        self.subnet_len.value = keep if keep in values else 0

    def values(self) -> panels.FormValues:
        return {"network": self.network.value, "subnet_len": self.subnet_len.value or None,
                "backend": self.backend, "vni": self.vni.value, "port": self.port.value,
                "direct_routing": self.direct_routing.value, "nodes": self.nodes.value}

    def check(self) -> panels.FormCheck | None:
        """Check the form (flannel's messages) and update the preview; returns the check."""
        if getattr(self, "_filling", False):
            return None
        self._filling = True
        try:
            self._fill_subnet_len(self.subnet_len.value or 0)
        finally:
            self._filling = False
        res = panels.check_form(self.lab.spec, **self.values())
        self.errors.value = "<br>".join(_error_html(f"{k}: {v}") for k, v in res.errors.items())
        if res.ok:
            extra = f" → SubnetLen /{res.effective_subnet_len}, {res.subnets} subnets for nodes"
            self.preview.value = (f"<code>{html.escape(panels.etcdctl_command(self.lab.spec.prefix, res.config_json))}"
                                  f"</code><br><small>{html.escape(extra)}</small>")
        else:
            self.preview.value = ""
        self.apply_button.disabled = not res.ok
        return res

    # -- Apply ----------------------------------------------------------------------------------
    def _progress(self, done: int, total: int, text: str) -> None:
        self.progress.max = total
        self.progress.value = done
        self.step.value = f"<small>{html.escape(f'[{done}/{total}] {text}')}</small>"
        if self._echo:
            print(f"[{done}/{total}] {text}", flush=True)

    def apply(self, echo: bool = True) -> tables.Table:
        """What the Apply button does; with echo, the steps and the result are printed."""
        res = self.check()
        assert res is not None  # check() gives None only to a re-entrant call, while it fills the form
        if not res.ok:
            raise LabError("; ".join(f"{k}: {v}" for k, v in res.errors.items()))
        new = panels.make_spec(self.lab.spec, **self.values())
        self.plan = self.lab.plan(new)
        self._echo = echo
        self.apply_button.disabled = True
        try:
            self.last_result = self.lab.reconfigure(new, progress=self._progress)
        finally:
            self._echo = False
            self.apply_button.disabled = False
        status = self.lab.status()
        self.result.value = tables.result_html(status)
        self.status = status
        return tables.result_table(status, f"lab {self.lab.spec.name}: {tables.config_summary(self.lab.spec)}")

    _echo = False
    plan: list[str] = []
    last_result: ReconfigureResult | None = None

    def apply_clicked(self) -> None:
        """What the Apply button does: apply() without echo; a failure is shown in the panel."""
        self.result.value = ""
        try:
            self.apply(echo=False)
        except Exception as e:
            self.step.value = _error_html(f"Apply failed: {e}")


class LabView(W.VBox):
    """Per node: the etcd lease beside the kernel entries flannel made from the peers' leases."""

    def __init__(self, lab: Lab | None = None) -> None:
        self.lab = _lab(lab)
        self.refresh_button = W.Button(description="Refresh", icon="refresh")
        self.refresh_button.on_click(lambda _b: self.refresh())
        self.body = W.HTML()
        super().__init__([W.HBox([W.HTML(f"<b>lab {html.escape(self.lab.spec.name)}</b>: leases in etcd → "
                                         "entries in each node's kernel"), self.refresh_button]),
                          self.body])
        self.add_class("labkit-lab-view")
        self.refresh()

    def refresh(self, node: str | None = None) -> str:
        """Re-read etcd and the kernel; returns the view as text (one node's, if given)."""
        self.view = tables.lab_view(self.lab.status())
        self.body.value = tables.lab_view_html(self.view)
        return tables.lab_view_text(self.view, node)

    def text(self, node: str | None = None) -> str:
        return tables.lab_view_text(self.view, node)

    def __repr__(self) -> str:
        return f"LabView(lab {self.lab.spec.name}: {len(self.view)} nodes)"


class ConnectivityMatrix(W.VBox):
    """The all-pairs ping matrix, green for ok, red for FAIL."""

    def __init__(self, lab: Lab | None = None, check: bool = True) -> None:
        self.lab = _lab(lab)
        self.check_button = W.Button(description="Check", icon="play")
        self.check_button.on_click(lambda _b: self.check())
        self.grid = W.HTML()
        self.result: dict[tuple[str, str], bool] = {}
        self.endpoints: list[str] = []
        super().__init__([W.HBox([W.HTML(f"<b>connectivity</b> in lab {html.escape(self.lab.spec.name)}"),
                                  self.check_button]), self.grid])
        self.add_class("labkit-matrix")
        if check:
            self.check()

    def check(self) -> str:
        self.endpoints = self.lab.endpoints()
        self.result = self.lab.connectivity(self.endpoints)
        self.grid.value = tables.matrix_html(self.result, self.endpoints)
        return tables.matrix_text(self.result, self.endpoints)

    def text(self) -> str:
        return tables.matrix_text(self.result, self.endpoints)

    def __repr__(self) -> str:
        good = sum(1 for v in self.result.values() if v)
        return f"ConnectivityMatrix(lab {self.lab.spec.name}: {good} of {len(self.result)} pairs reachable)"


class CapturePanel(W.VBox):
    """Where to listen, what to keep, what traffic to send; then the decoded packets."""

    def __init__(self, lab: Lab | None = None, pcap_dir: str = "captures") -> None:
        self.lab = _lab(lab)
        self.pcap_dir = pcap_dir
        eps = self.lab.endpoints()
        targets = [n.name for n in self.lab.nodes] + [e for e in eps if "/" in e]
        self.target = W.Dropdown(options=targets, value=targets[0], description="capture on", style=WIDE)
        self.iface = W.Dropdown(description="interface", style=WIDE)
        self.filter = W.Text(value="icmp or udp port 8472", description="BPF filter", style=WIDE,
                             layout=W.Layout(width="420px"))
        self.count = W.IntSlider(value=4, min=1, max=50, description="packets", style=WIDE)
        self.timeout = W.BoundedFloatText(value=3.0, min=0.5, max=30.0, step=0.5, description="timeout (s)",
                                          style=WIDE, layout=W.Layout(width="220px"))
        pairs = [(f"ping {a} → {b}", (a, b)) for a in eps for b in eps if a != b]
        self.traffic = W.Dropdown(options=[("no traffic (just listen)", None)] + pairs,
                                  value=pairs[0][1] if pairs else None, description="traffic", style=WIDE,
                                  layout=W.Layout(width="420px"))
        self.run_button = W.Button(description="Capture", button_style="primary", icon="play")
        self.run_button.on_click(lambda _b: self._run_clicked())
        self.status = W.HTML()
        self.table = W.HTML()
        self.packet = W.Dropdown(description="packet", style=WIDE, layout=W.Layout(width="220px"))
        self.packet.observe(lambda _c: self._show_layers(), names="value")
        self.layers = W.HTML()
        self.target.observe(lambda _c: self._fill_ifaces(), names="value")
        self._fill_ifaces()
        self.result: cap.Capture | None = None
        self._cap = cap
        super().__init__([W.HTML(f"<b>packet capture</b> in lab {html.escape(self.lab.spec.name)}"),
                          W.HBox([self.target, self.iface]), self.filter, W.HBox([self.count, self.timeout]),
                          self.traffic, W.HBox([self.run_button, self.status]), self.table, self.packet,
                          self.layers], layout=W.Layout(border="1px solid #d0d7de", padding="8px"))
        self.add_class("labkit-capture-panel")

    def __repr__(self) -> str:
        n = len(self.result.packets) if self.result else 0
        return f"CapturePanel(lab {self.lab.spec.name}: {n} packets captured)"

    def _fill_ifaces(self) -> None:
        names = self._ifaces(self.target.value)
        self.iface.options = names
        self.iface.value = "eth0" if "eth0" in names else (names[0] if names else None)

    def _ifaces(self, target: str) -> list[str]:
        try:
            return [n for n in cap.interfaces(self.lab, target) if n != "lo"] + ["lo"]
        except LabError:
            return []

    def run(self) -> cap.Capture:

        """Capture now (what the button does); returns the Capture."""
        cap = self._cap
        traffic = None
        if self.traffic.value:
            src, dst = self.traffic.value
            traffic = cap.ping(self.lab, src, dst, count=1)
        self.status.value = "<i>capturing ...</i>"
        c = cap.capture_many(self.lab, [(self.target.value, self.iface.value)], filter=self.filter.value or None,
                             count=self.count.value, timeout=self.timeout.value, traffic=traffic,
                             pcap_dir=self.pcap_dir)[0]
        self.result = c
        link = ""
        if c.pcap:
            rel = os.path.relpath(c.pcap)
            link = f" — <a href='{html.escape(rel)}' download>{html.escape(os.path.basename(rel))}</a>"
        self.status.value = f"{len(c.packets)} packet(s), stopped by {c.stopped}{link}"
        self.table.value = tables.html_table(["no", "dir", "bytes", "decoded"],
                                            [[r["no"], r["dir"], r["len"], r["summary"]] for r in c.rows()],
                                            css="labkit-capture")
        self.packet.options = [(str(p.index), p.index) for p in c.packets]
        self.packet.value = c.packets[0].index if c.packets else None
        self._show_layers()
        return c

    def _show_layers(self) -> None:
        if not self.result or not self.packet.value:
            self.layers.value = ""
            return
        p = self.result.packets[self.packet.value - 1]
        self.layers.value = f"<pre class='labkit-layers'>{html.escape(self._cap.layers_text(p))}</pre>"

    def _run_clicked(self) -> None:
        try:
            self.run()
        except Exception as e:
            self.status.value = _error_html(f"capture failed: {e}")


