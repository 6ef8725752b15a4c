"""The udp backend's proxy (proxy_amd64.c in Python): commands, route table, TTL, ICMP."""
import os
import random
import shutil
import socket
import struct
import subprocess
import sys
import textwrap

import pytest

from labkit.flannel.backends.udp import proxy as P
from labkit.flannel.backends.udp.udp import parse_backend_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def ip_header(src="10.108.1.2", dst="10.108.2.3", ttl=64, proto=6, ident=0x1234, frag=0x4000, payload=b""):
    hdr = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident, frag, ttl, proto, 0,
                                socket.inet_aton(src), socket.inet_aton(dst)))
    hdr[10:12] = struct.pack("!H", P.cksum(hdr))
    return hdr + payload


def test_command_is_the_c_struct():
    """int, in_addr_t, int, in_addr_t, short + padding: 20 bytes, addresses in network order."""
    data = P.pack_command(P.CMD_SET_ROUTE, "10.108.5.0", 24, "192.168.50.3", 8285)
    assert len(data) == 20
    assert data[4:8] == socket.inet_aton("10.108.5.0") and data[12:16] == socket.inet_aton("192.168.50.3")
    assert P.unpack_command(data) == (P.CMD_SET_ROUTE, "10.108.5.0", 24, "192.168.50.3", 8285)
    assert P.unpack_command(P.pack_command(P.CMD_STOP))[0] == P.CMD_STOP


def test_netmask():
    assert P.netmask(24) == 0xFFFFFF00 and P.netmask(32) == 0xFFFFFFFF and P.netmask(0) == 0


@pytest.mark.parametrize("seed", range(5))
def test_ttl_decrement_keeps_the_checksum_valid(seed):
    rng = random.Random(seed)
    for _ in range(2000):
        pkt = ip_header(src=".".join(str(rng.randrange(256)) for _ in range(4)),
                        dst=".".join(str(rng.randrange(256)) for _ in range(4)),
                        ttl=rng.randrange(2, 256), ident=rng.randrange(65536), proto=rng.randrange(256))
        before = pkt[8]
        assert P.decrement_ttl(pkt)
        assert pkt[8] == before - 1
        assert P.cksum(pkt[:20]) == 0, pkt.hex()   # a valid header sums to 0xFFFF


def test_ttl_decrement_across_the_checksum_wrap():
    """Checksums near 0xFFFF exercise the end-around carry of RFC 1624."""
    found = 0
    for ident in range(65536):
        pkt = ip_header(ident=ident, ttl=17)
        c = pkt[10] << 8 | pkt[11]
        if c >= 0xFEF0:
            found += 1
            assert P.decrement_ttl(pkt) and P.cksum(pkt[:20]) == 0
    assert found


def test_ttl_reaching_zero_is_dropped():
    pkt = ip_header(ttl=1)
    assert P.decrement_ttl(pkt) is False


def test_net_unreachable_is_flannels_icmp():
    offender = ip_header(src="10.108.7.2", dst="10.108.0.9", payload=b"ABCDEFGHIJKLMNOP")
    pkt = P.net_unreachable(offender, socket.inet_aton("10.108.7.0"))
    assert len(pkt) == 20 + 8 + 20 + 8
    assert P.cksum(pkt[:20]) == 0 and P.cksum(pkt[20:]) == 0
    assert pkt[8] == 8 and pkt[9] == 1                          # TTL 8, ICMP
    assert pkt[12:16] == socket.inet_aton("10.108.7.0")        # from the TUN's address
    assert pkt[16:20] == socket.inet_aton("10.108.7.2")        # back to the sender
    assert pkt[20] == 3 and pkt[21] == 0                        # dest unreachable / net unreachable
    assert pkt[28:] == bytes(offender[:28])                     # its header + 8 bytes


def test_no_icmp_about_icmp_nor_for_later_fragments():
    tun = socket.inet_aton("10.108.7.0")
    assert P.net_unreachable(ip_header(proto=1, payload=b"x" * 8), tun) is None
    assert P.net_unreachable(ip_header(frag=0x0010, payload=b"x" * 8), tun) is None
    assert P.net_unreachable(ip_header(frag=0x4000, payload=b"x" * 8), tun) is not None  # DF only


def test_route_table_first_match_swapped_to_front():
    t = P.RouteTable()
    t.set_route("10.108.1.0", 24, "192.168.50.1", 8285)
    t.set_route("10.108.2.0", 24, "192.168.50.2", 8285)
    t.set_route("10.108.3.7", 24, "192.168.50.3", 8285)      # host bits are masked
    assert [e[0] for e in t.entries()] == ["10.108.1.0", "10.108.2.0", "10.108.3.0"]
    dst = int.from_bytes(socket.inet_aton("10.108.3.9"), "big")
    assert t.find_route(dst) == ("192.168.50.3", 8285)
    assert [e[0] for e in t.entries()] == ["10.108.3.0", "10.108.2.0", "10.108.1.0"]  # swapped with #0
    assert t.find_route(int.from_bytes(socket.inet_aton("10.108.9.1"), "big")) is None
    t.set_route("10.108.2.0", 24, "192.168.50.20", 9000)      # same subnet: next hop replaced
    assert ("10.108.2.0", 24, "192.168.50.20", 9000) in t.entries() and len(t.entries()) == 3
    assert t.del_route("10.108.3.0", 24)
    assert [e[0] for e in t.entries()] == ["10.108.1.0", "10.108.2.0"]  # the last one filled the hole
    assert not t.del_route("10.108.3.0", 24)


def test_udp_backend_config():
    assert parse_backend_config({"Type": "udp"}) == {"Port": 8285}
    assert parse_backend_config({"port": 9000}) == {"Port": 9000}        # Go matches keys case-insensitively
    assert parse_backend_config({"Port": None}) == {"Port": 8285}
    with pytest.raises(ValueError, match="error decoding UDP backend config: json: cannot unmarshal "
                                         "string into Go struct field .Port of type int"):
        parse_backend_config({"Port": "8285"})


E2E = textwrap.dedent(r'''
    import os, socket, struct, sys, time
    sys.path.insert(0, sys.argv[1])
    from labkit.flannel.backends.udp import proxy as P
    os.system("ip link set lo up")
    def hdr(src, dst, ttl, proto=17, payload=b"hello world!"):
        h = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 1, 0x4000, ttl, proto, 0,
                                  socket.inet_aton(src), socket.inet_aton(dst)))
        h[10:12] = struct.pack("!H", P.cksum(h))
        return bytes(h) + payload
    # a "TUN" for each side: a datagram socketpair keeps packet boundaries like a TUN fd
    tun_a, kern_a = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    tun_b, kern_b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    ua = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); ua.bind(("127.0.0.1", 0))
    ub = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); ub.bind(("127.0.0.1", 0))
    ctl_a, ctl_a2 = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    a = P.Proxy(tun_a.fileno(), ua, ctl_a2, "10.108.1.0", 1472)
    b = P.Proxy(tun_b.fileno(), ub, None, "10.108.2.0", 1472)
    import threading
    threading.Thread(target=a.run, daemon=True).start()
    b.start()
    ctl_a.send(P.pack_command(P.CMD_SET_ROUTE, "10.108.2.0", 24, "127.0.0.1", ub.getsockname()[1]))
    time.sleep(0.2)
    kern_a.settimeout(3); kern_b.settimeout(3)
    kern_a.send(hdr("10.108.1.5", "10.108.2.7", 64))
    got = kern_b.recv(2000)
    assert got[8] == 62 and P.cksum(got[:20]) == 0 and got[20:] == b"hello world!", got.hex()
    # a subnet nobody leased: ICMP net unreachable comes back into A's TUN
    kern_a.send(hdr("10.108.1.5", "10.108.9.9", 64))
    icmp = kern_a.recv(2000)
    assert icmp[9] == 1 and icmp[20] == 3 and icmp[21] == 0 and icmp[12:16] == socket.inet_aton("10.108.1.0")
    # DEL_ROUTE: the peer is unknown again
    ctl_a.send(P.pack_command(P.CMD_DEL_ROUTE, "10.108.2.0", 24)); time.sleep(0.2)
    kern_a.send(hdr("10.108.1.5", "10.108.2.7", 64))
    assert kern_a.recv(2000)[20] == 3
    # TTL 1 dies in the proxy: nothing reaches B
    ctl_a.send(P.pack_command(P.CMD_SET_ROUTE, "10.108.2.0", 24, "127.0.0.1", ub.getsockname()[1]))
    time.sleep(0.2)
    kern_a.send(hdr("10.108.1.5", "10.108.2.7", 1))
    kern_b.settimeout(0.5)
    try:
        kern_b.recv(2000); raise AssertionError("a TTL-1 packet went through")
    except socket.timeout:
        pass
    # end of file on the control socket (flanneld gone) stops the proxy
    ctl_a.close(); time.sleep(0.3)
    assert a.stopped.is_set()
    print("E2E OK")
''')


BURSTS = textwrap.dedent(r'''
    import os, socket, struct, sys
    sys.path.insert(0, sys.argv[1])
    from labkit.flannel.backends.udp import proxy as P
    os.system("ip link set lo up")
    def hdr(dst, ttl=64, n=0):
        h = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 24, n, 0x4000, ttl, 17, 0,
                                  socket.inet_aton("10.108.1.5"), socket.inet_aton(dst)))
        h[10:12] = struct.pack("!H", P.cksum(h))
        return bytes(h) + struct.pack("!I", n)
    tun, kern = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)   # a fake TUN
    kern.settimeout(1)
    ua = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); ua.bind(("127.0.0.1", 0))
    ub = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); ub.bind(("127.0.0.1", 0))
    ub.settimeout(1)
    a = P.Proxy(tun.fileno(), ua, None, "10.108.1.0", 1472)
    os.set_blocking(tun.fileno(), False)               # what serve() does first
    a.table.set_route("10.108.2.0", 24, "127.0.0.1", ub.getsockname()[1])
    assert a.tun_to_udp(3) == 0 and a.udp_to_tun(3) == 0   # nothing queued: no wait, no error
    for i in range(5):
        kern.send(hdr("10.108.2.7", n=i))
    # a burst takes at most `burst` packets, in order; the next one the rest
    assert a.tun_to_udp(3) == 3 and a.tun_to_udp(3) == 2 and a.tun_to_udp(3) == 0
    got = [ub.recv(2000) for _ in range(5)]
    assert [struct.unpack("!I", g[20:])[0] for g in got] == [0, 1, 2, 3, 4]
    assert all(g[8] == 63 and P.cksum(g[:20]) == 0 for g in got)
    # dropped packets count as moved (they left the queue): TTL 1, no route (ICMP back)
    kern.send(hdr("10.108.2.7", ttl=1)); kern.send(hdr("10.108.9.9"))
    assert a.tun_to_udp() == 2 and kern.recv(2000)[20] == 3
    # the other way: datagrams into the TUN, a burst at a time, TTL decremented
    for i in range(4):
        ub.sendto(hdr("10.108.1.5", n=i), ua.getsockname())
    assert a.udp_to_tun(3) == 3 and a.udp_to_tun(3) == 1 and a.udp_to_tun(3) == 0
    back = [kern.recv(2000) for _ in range(4)]
    assert [b[8] for b in back] == [63] * 4 and [struct.unpack("!I", b[20:])[0] for b in back] == [0, 1, 2, 3]
    print("BURSTS OK")
''')


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root and unshare")
def test_bursts_take_at_most_burst_packets_and_stop_at_an_empty_queue():
    """tun_to_udp/udp_to_tun on fake TUNs and loopback UDP in a throwaway network namespace."""
    r = subprocess.run(["unshare", "--net", sys.executable, "-c", BURSTS, ROOT], capture_output=True,
                       text=True, timeout=30)
    assert "BURSTS OK" in r.stdout, r.stdout + r.stderr


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root and unshare")
def test_proxy_end_to_end_in_a_private_namespace():
    """Two proxies, fake TUNs, real UDP on a loopback of a throwaway network namespace."""
    r = subprocess.run(["unshare", "--net", sys.executable, "-c", E2E, ROOT], capture_output=True, text=True,
                       timeout=30)
    assert "E2E OK" in r.stdout, r.stdout + r.stderr
