"""``from labkit.widgets import ConfigPanel``: the panels live in :mod:`labkit.notebook.widgets`."""
from ..notebook.widgets import CapturePanel, ConfigPanel, ConnectivityMatrix, LabView  # noqa: F401

__all__ = ["ConfigPanel", "LabView", "ConnectivityMatrix", "CapturePanel"]
