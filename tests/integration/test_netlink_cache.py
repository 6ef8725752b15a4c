"""labkit.netns.netlink keeps one pyroute2 socket per namespace; a name used again for a new
namespace (a container stopped and started by another process) must get a new socket."""
import subprocess

from labkit import netns
from labkit.state import LabState


def _links(ipr):
    return sorted(link.get_attr("IFLA_IFNAME") for link in ipr.get_links())


def test_a_namespace_made_again_under_its_name_gets_a_new_socket(lab_name):
    ns = LabState(lab_name).netns("cache")
    netns.add(ns)
    netns.netlink.call(ns, lambda ipr: ipr.link("add", ifname="old0", kind="bridge"))
    assert "old0" in netns.netlink.call(ns, _links)
    # removed and made again behind this process's back, as another process's `docker stop`
    # and `docker start` do; no prune has come due in between
    subprocess.run(["ip", "netns", "delete", ns], check=True)
    netns.add(ns)
    netns.netlink._prune_at = float("inf")
    try:
        assert netns.netlink.call(ns, _links) == ["lo"]
    finally:
        netns.netlink._prune_at = 0.0
        netns.delete(ns)
