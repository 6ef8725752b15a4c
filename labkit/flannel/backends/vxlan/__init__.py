"""The VXLAN backend, one file per file of flannel's pkg/backend/vxlan:

* ``vxlan.py``          - RegisterNetwork: parse Backend config, create the device,
                          acquire the lease, put the /32 on the device;
* ``device.py``         - the flannel.<VNI> device: ensureLink, Configure, ARP and FDB;
* ``vxlan_network.py``  - Run: for each remote lease, ARP -> FDB -> onlink route; and
                          (v0.27.4+) re-create flannel.<VNI> when it is deleted.
"""
