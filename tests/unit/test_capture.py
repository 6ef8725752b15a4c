"""labkit.capture without a lab: decoding, the layer table, pcap files, the bounds."""
import struct

import pytest

from labkit import capture as C
from labkit.errors import LabError


def vxlan_frame(dport=8472, vni=1, payload=b"x" * 56):
    from scapy.layers.inet import ICMP, IP, UDP
    from scapy.layers.l2 import Ether
    from scapy.layers.vxlan import VXLAN
    inner = (Ether(src="e6:03:db:69:bd:3e", dst="c6:9d:9d:72:fd:f2") /
             IP(src="10.108.93.2", dst="10.108.99.2", ttl=63, flags="DF") / ICMP(type=8, seq=1) / payload)
    outer = (Ether(src="0a:2a:1f:79:28:8a", dst="fe:ec:f4:ba:97:09") /
             IP(src="192.168.50.1", dst="192.168.50.2") / UDP(sport=40000, dport=dport) /
             VXLAN(vni=vni, flags=0x08) / inner)
    return bytes(outer), bytes(inner)


def test_vxlan_on_8472_is_decoded_layer_by_layer():
    raw, inner = vxlan_frame()
    assert len(raw) == 148 and len(inner) == 98
    rows = C.dissect(C.decode(raw))
    assert [(r["offset"], r["length"], r["layer"]) for r in rows] == [
        (0, 14, "Ethernet"), (14, 20, "IP"), (34, 8, "UDP"), (42, 8, "VXLAN"),
        (50, 14, "inner Ethernet"), (64, 20, "inner IP"), (84, 8, "inner ICMP"), (92, 56, "payload")]
    assert "vni=1" in rows[3]["fields"] and "flags=0x08" in rows[3]["fields"]
    assert "dport=8472" in rows[2]["fields"]
    assert "seq=1" in rows[6]["fields"] and "echo-request" in rows[6]["fields"]


def test_describe_names_outer_and_inner():
    raw, _ = vxlan_frame()
    assert C.describe(C.decode(raw)) == ("192.168.50.1 > 192.168.50.2 udp/8472 VXLAN vni=1 | "
                                         "10.108.93.2 > 10.108.99.2 ICMP echo-request seq=1")


def test_layers_text_counts_the_overhead():
    raw, _ = vxlan_frame()
    text = C.layers_text(C.decode(raw))
    assert "inner frame 98 B + encapsulation 50 B" in text
    # the MTU limits the outer IP packet: the 50 B it counts hold the inner Ethernet header
    assert ("outer IP packet 134 B = inner IP 84 + inner Ethernet 14 + VXLAN 8 + UDP 8 + outer IP 20: "
            "what the MTU limits (50 B of overhead") in text
    assert "148  total on the wire" in text


def test_a_configured_port_is_decoded_too():
    raw, _ = vxlan_frame(dport=8999, vni=7)
    assert "VXLAN" not in C.describe(C.decode(raw))          # unknown port: just UDP
    assert "VXLAN vni=7" in C.describe(C.decode(raw, vxlan_ports=(8472, 8999)))


def test_raw_ip_link_type_for_tun_devices():
    from scapy.layers.inet import ICMP, IP
    raw = bytes(IP(src="10.5.1.0", dst="10.5.2.3") / ICMP(type=0, seq=4))
    assert C.describe(C.decode(raw, C.DLT_RAW)) == "10.5.1.0 > 10.5.2.3 ICMP echo-reply seq=4"
    assert C.linktype_for(C.ARPHRD_NONE) == C.DLT_RAW
    assert C.linktype_for(C.ARPHRD_ETHER) == C.DLT_EN10MB


def test_pcap_files_are_classic_libpcap(tmp_path):
    from scapy.utils import rdpcap
    raw, _ = vxlan_frame()
    pkts = [C.Packet(index=1, time=0.0, direction="out", data=raw, linktype=C.DLT_EN10MB, stamp=1700000000.25),
            C.Packet(index=2, time=0.1, direction="in", data=raw[:60], linktype=C.DLT_EN10MB, stamp=1700000000.35)]
    path = C.write_pcap(str(tmp_path / "sub" / "x.pcap"), pkts, C.DLT_EN10MB)
    with open(path, "rb") as f:
        magic, major, minor, _tz, _sig, snaplen, linktype = struct.unpack("<IHHiIII", f.read(24))
    assert (magic, major, minor, linktype) == (0xA1B2C3D4, 2, 4, 1)
    back = rdpcap(path)
    assert [bytes(p) for p in back] == [raw, raw[:60]]
    assert float(back[0].time) == pytest.approx(1700000000.25, abs=1e-5)


def test_capture_text_and_first():
    raw, _ = vxlan_frame()
    cap = C.Capture(target="master", iface="eth0", filter="udp port 8472", count=2, timeout=1.0,
                    packets=[C.Packet(1, 0.001, "out", raw, C.DLT_EN10MB)], stopped="timeout")
    text = cap.text()
    assert text.startswith("master eth0: 1 packet(s) matching 'udp port 8472' (stopped by timeout)")
    assert "148 B" in text and "VXLAN vni=1" in text
    assert cap.first("echo-request").index == 1
    with pytest.raises(LabError):
        cap.first("echo-reply")
    assert "<table>" in cap._repr_html_()


@pytest.mark.parametrize("count,timeout", [(0, 1.0), (C.MAX_COUNT + 1, 1.0), (1, 0), (1, -1), (1, C.MAX_TIMEOUT + 1)])
def test_every_capture_is_bounded(count, timeout):
    with pytest.raises(LabError):
        C.check_bounds(count, timeout)


def test_filters_are_compiled_by_libpcap():
    import socket
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        with pytest.raises(LabError, match="invalid capture filter"):
            C.attach_filter(s, "udp port", C.DLT_EN10MB)
    finally:
        s.close()


def test_in_namespace_refuses_unknown_namespaces():
    with pytest.raises(LabError, match="no namespace"):
        C.in_namespace("labkit-no-such-ns", lambda: None)
