"""Bad input that is refused before anything is built, or decoded as flannel decodes it."""
import os
import subprocess
import sys

import pytest

from labkit.errors import LabError
from labkit.flannel.backends import decode_backend_config, require_ipv4
from labkit.flannel.backends.udp.udp import parse_backend_config as udp_config
from labkit.flannel.backends.vxlan.vxlan import parse_backend_config as vxlan_config
from labkit.flannel.config import parse_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.parametrize("backend,message", [
    # flannel's VXLANConfig has json tags, Go names the field by them
    ({"VNI": "1"}, "error decoding VXLAN backend config: json: cannot unmarshal string into Go struct field "
                   "VXLANConfig.vni of type int"),
    ({"VNI": 1.5}, "error decoding VXLAN backend config: json: cannot unmarshal number 1.5 into Go struct "
                   "field VXLANConfig.vni of type int"),
    ({"vni": 10 ** 20}, "json: cannot unmarshal number 100000000000000000000 into Go struct field "
                        "VXLANConfig.vni of type int"),
    ({"Port": True}, "json: cannot unmarshal bool into Go struct field VXLANConfig.port of type int"),
    ({"DirectRouting": 1}, "json: cannot unmarshal number into Go struct field VXLANConfig.directRouting "
                           "of type bool"),
    ({"Port": 70000}, "error decoding VXLAN backend config: Port 70000 is not a UDP port (0-65535); flannel "
                      "has no check and would use UDP port 4464, labkit's flanneld refuses it"),
    ({"Port": -5}, "Port -5 is not a UDP port (0-65535); flannel has no check and would use the kernel's "
                   "default port 8472"),
])
def test_vxlan_options_decoded_as_go_does(backend, message):
    with pytest.raises(ValueError) as e:
        vxlan_config(backend, 1500)
    assert message in str(e.value)


def test_out_of_range_vni_decodes_and_is_left_to_the_kernel():
    """Go decodes 99999999999 and -5 into an int: the kernel refuses them (integration test)."""
    assert vxlan_config({"VNI": 99999999999}, 1500)["VNI"] == 99999999999
    assert vxlan_config({"VNI": -5}, 1500)["VNI"] == -5


def test_udp_options_keep_flannels_anonymous_struct():
    with pytest.raises(ValueError, match=r"error decoding UDP backend config: json: cannot unmarshal string "
                                         r"into Go struct field \.Port of type int$"):
        udp_config({"Port": "x"})


def test_decode_backend_config_number_into_bool_has_no_literal():
    with pytest.raises(ValueError) as e:
        decode_backend_config({"gbp": 3}, {"GBP": False}, "X")
    assert str(e.value).endswith("cannot unmarshal number into Go struct field .GBP of type bool")


def test_ipv6_only_and_no_family_configs():
    v6 = parse_config('{"EnableIPv6": true, "EnableIPv4": false, "IPv6Network": "fc00::/48"}')
    with pytest.raises(RuntimeError, match="labkit's flanneld runs IPv4 networks only, and this config has "
                                           "EnableIPv4 false"):
        require_ipv4(v6)
    none = parse_config('{"EnableIPv4": false}')
    with pytest.raises(RuntimeError, match="^none defined stack$"):
        require_ipv4(none)
    require_ipv4(parse_config('{"Network": "10.1.0.0/16"}'))


def test_pcap_paths(tmp_path):
    from labkit.capture import check_pcap_path
    f = tmp_path / "file"
    f.write_text("x")
    for bad, words in [(str(tmp_path), "it is a directory"), (str(tmp_path) + "/", "it is a directory"),
                       (str(f / "x.pcap"), "is a file, not a directory"),
                       (str(f / "a" / "x.pcap"), "is a file, not a directory"),
                       (str(tmp_path / "no" / "dir" / "x.pcap"), "does not exist (labkit does not create it)"),
                       ("", "invalid file name '' for the pcap file")]:
        with pytest.raises(LabError) as e:
            check_pcap_path(bad)
        assert words in str(e.value)
    assert not (tmp_path / "no").exists()
    assert check_pcap_path(str(tmp_path / "ok.pcap")) == str(tmp_path / "ok.pcap")


def test_a_bundle_path_is_refused_before_the_lab_is_read(tmp_path):
    """`labkit export -o` into a missing folder was an internal error after the whole lab
    had been read; now it is one line, and the lab (here: none at all) is not touched."""
    from labkit.bundle import export
    for bad, words in [(str(tmp_path / "no" / "x.json"), "does not exist (labkit does not create it)"),
                       (str(tmp_path), "it is a directory; give a file name, e.g."), ("", "invalid file name")]:
        with pytest.raises(LabError) as e:
            export(None, bad)  # type: ignore[arg-type]
        assert str(e.value).startswith(("cannot write the bundle", "invalid file name")) and words in str(e.value)
    assert list(tmp_path.iterdir()) == []


def test_capture_ping_count_refused_up_front():
    from labkit import capture
    for n in (0, -1, 10 ** 8):
        with pytest.raises(LabError, match="--ping-count must be between 1 and 1000"):
            capture.ping(object(), "a", "b", count=n)


def test_argparse_errors_are_one_line():
    r = subprocess.run([sys.executable, "-m", "labkit.cli", "up", "--nodes", "x"], capture_output=True,
                       text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 2
    assert r.stderr == ("labkit up: error: argument --nodes: invalid int value: 'x' "
                        "(see: labkit up --help)\n")


def test_a_scenario_file_from_a_bundle_is_refused_before_the_bundle_is_read(tmp_path):
    """`labkit scenario from-bundle B -o FILE`: a FILE that cannot be written is one line, and the
    bundle (here a file that does not exist) is not even opened."""
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    f = tmp_path / "file"
    f.write_text("x")
    for out, words in [(str(tmp_path / "no" / "ab.yaml"), "does not exist (labkit does not create it)"),
                       (str(f / "ab.yaml"), "is a file, not a directory"),
                       (str(tmp_path / "x.yaml"), "NAME of 2-48 lower-case letters"),
                       (str(f), "must be NAME.yaml")]:
        r = subprocess.run([sys.executable, "-m", "labkit", "scenario", "from-bundle", str(tmp_path / "none.json"),
                            "-o", out], capture_output=True, text=True, timeout=60,
                           env={**os.environ, "PYTHONPATH": root})
        assert r.returncode == 1 and words in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_a_scenario_argument_that_is_neither_a_name_nor_a_yaml_file_says_what_is_expected():
    from labkit.scenario import model
    with pytest.raises(LabError) as e:
        model.load("/etc/passwd")
    assert "or the path of a scenario file ending in .yaml" in str(e.value)
