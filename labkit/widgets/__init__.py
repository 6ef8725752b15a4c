"""``from labkit.widgets import ConfigPanel``: the panels live in :mod:`labkit.notebook.widgets`."""
from ..notebook.widgets import CapturePanel, ConfigPanel, ConnectivityMatrix, LabView

__all__ = ["CapturePanel", "ConfigPanel", "ConnectivityMatrix", "LabView"]
