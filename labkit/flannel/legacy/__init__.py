"""flannel 0.7.1, as CentOS 7 shipped it: what the blog's author was running.

Read next to flannel's v0.7.1 tag (``backend/vxlan/{vxlan,device,network}.go``,
``subnet/{config,local_manager,registry}.go``, ``network/{manager,network}.go``).
What differs from the modern flanneld in ``labkit.flannel``:

* **etcd v2 keys API.** Config at ``<prefix>/config``, leases at
  ``<prefix>/subnets/<net>-<len>`` with a 24 h key TTL; written with ``etcdctl set``.
* **Config rules.** SubnetLen defaults to 24, or prefix+1 for a /24 or smaller network
  ("HostSubnet is larger network than Network"); none of today's /28 and /30 checks.
* **No previous-subnet reuse.** A lease is reused only by PublicIP.
* **VXLAN on demand.** The device gets ``app_solicit=3``: when the kernel needs the MAC
  of a remote *container* address, it asks flanneld over netlink (an "L3 miss") and
  flanneld answers from its table of leases. FDB entries (VtepMAC -> PublicIP) are
  added on lease events; one route covers the whole Network via flannel.1.

**Why the blog's second problem happens (our reading of the source).** On restart,
``ensureLink`` keeps an existing flannel.1 unless its type, VNI, vtep interface, vtep
IP, group, l2miss or (both set) port differ. ``Configure`` then only *adds* the new
lease's address as a /32 (``setAddr4``; its error is ignored) and adds a route for the
whole Network; nothing old is ever removed. So after changing ``Network`` in etcd and
restarting flanneld, flannel.1 keeps its old address (which stays the primary one:
``ifconfig`` shows it, and the node uses it as the source of its own traffic) and the
old Network's route. A VNI change creates flannel.<new> beside the old device, whose
route for the Network stays in charge. ``ip link del flannel.1`` before the restart
removes all of it, and the restart builds a clean device: the blog's fix.
"""
