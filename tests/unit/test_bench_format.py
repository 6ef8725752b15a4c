"""The benchmarks' arithmetic and printing (labkit/bench.py) on made-up runs: interleaved
pairs give per-pair ratios and their median; every figure the README names is printed."""
from labkit import bench


def _runs(gbps, pps, per_cpu):
    return ([{"gbps": g, "retransmits": 0, "gbit_per_cpu_s": c} for g, c in zip(gbps, per_cpu)],
            [{"pps": p, "sent_pps": p, "lost_percent": 0.0} for p in pps])


def test_pair_ratios_are_per_pair_then_the_median():
    got = {"lab": _runs([9, 5, 8], [90, 50, 80], [9, 9, 9]), "ref": _runs([10, 10, 8], [100, 100, 100], [10, 10, 12])}
    r = bench._pair_ratios(got, "lab", "ref", "vs_reference")
    assert r["tcp_vs_reference_pairs"] == [0.9, 0.5, 1.0]
    assert r["tcp_vs_reference"] == 0.9                   # the median of the pairs, not of each side
    assert r["udp_vs_reference"] == 0.8
    assert r["tcp_per_cpu_vs_reference"] == 0.9


def test_format_throughput_and_scale_print_every_figure():
    row = {"path": "vxlan", "mtu": 1450, "tcp_gbps": 9.0, "tcp_retransmits": 3, "udp_pps": 50e3,
           "udp_sent_pps": 50e3, "udp_lost_percent": 1.0, "tcp_ratio": 0.7, "udp_ratio": 0.5,
           "reference": "vxlan", "ref_tcp_gbps": 10.0, "ref_udp_pps": 60e3, "ref_rules_tcp_gbps": 9.2,
           "tcp_vs_reference": 0.9, "udp_vs_reference": 0.83, "tcp_per_cpu_vs_reference": 0.8,
           "tcp_rules_vs_reference": 0.92, "tcp_per_cpu_rules_vs_reference": 0.85}
    under = {"path": "underlay", "mtu": 1500, "tcp_gbps": 13.0, "tcp_retransmits": None, "udp_pps": 100e3,
             "udp_sent_pps": 100e3, "udp_lost_percent": 0.0, "tcp_ratio": 1.0, "udp_ratio": 1.0}
    text = bench.format_throughput({"seconds": 5, "pps_seconds": 3, "packet_size": 64, "repeat": 3, "cpus": 2,
                                    "kernel": "k", "summary": {"vxlan_vs_reference": 0.9,
                                                               "vxlan_over_udp": 12.0},
                                    "results": [under, row]})
    assert "x ref" in text and "0.90" in text and "vxlan over udp 12.00" in text
    assert "with the lab's iptables rules 9.20 Gbit/s (0.92x" in text
    res = {"cpus": 2, "kernel": "k", "date": "d", "results": [{
        "nodes": 100, "up_seconds": 9.0, "converged_seconds": 9.5, "converged_and_pinged_seconds": 10.0,
        "mesh": {"nodes_complete": 100, "nodes": 100}, "pings_passed": 10, "pings_tried": 10,
        "memory_kib": 1024 * 1000, "memory_per_process_kib": {"flanneld": 12 * 1024},
        "cpu_seconds_by_kind": {"flanneld": 5.0, "labkit (this process + its commands)": 2.0}}],
        "bringup": {"lib_seconds": 0.6, "cli_seconds": 1.2, "lib_samples": [0.6] * 3, "cli_samples": [1.2] * 3,
                    "targets": {"lib": 0.5, "cli": 1.0}}}
    text = bench.format_scale(res)
    assert "100/100" in text and "flanneld 12.0" in text and "labkit 2.0" in text
    assert "library 0.60s (target 0.5)" in text and "CLI up + status --json + exec ping 1.20s (target 1)" in text
