"""Pictures of the lab, drawn from what it is now (a LabStatus), never from constants.

Below the CLI and the notebook layer, above status: `labkit status --svg FILE` and a
notebook's ``topology(lab.status())`` draw the same picture. drawsvg makes the SVG.

* ``topology``: nodes, switch (and router), etcd, eth0, flannel's device, docker0, veths,
  containers, the Network;
* ``svgfile``: checking a file name the user gave and writing it atomically.
"""
from .topology import Topology, topology  # noqa: F401
