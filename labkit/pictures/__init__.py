"""Pictures drawn from the running lab (drawsvg): each module draws one idea.

Below the CLI and the notebook layer, above status: what a picture needs it reads from a
LabStatus or from the lab's own outputs, never from constants.

* ``topology``: nodes, switch (and router), etcd, eth0, flannel's device, docker0, veths,
  containers, the Network (``topology(lab.status())``; ``labkit status --svg FILE``);
* ``walk``: a packet's walk hop by hop; ``timeline``: the control plane over time;
* ``svgfile``: checking a file name the user gave and writing a picture atomically.
"""
from .topology import Topology, topology  # noqa: F401
