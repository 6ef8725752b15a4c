"""Tests for labkit.flannel.config (flannel pkg/subnet/config.go)."""

from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

import pytest

from labkit.flannel.config import (
    KNOWN_BACKENDS,
    Config,
    ConfigError,
    check_network_config,
    decode_config,
    default_subnet_len,
    go_json_marshal,
    go_json_parse,
    go_json_string,
    go_parse_cidr,
    is_known_backend,
    parse_config,
    subnet_len_bounds,
    unknown_backend_message,
    validate_network_cidr,
)


def err(text) -> str:
    with pytest.raises(ConfigError) as e:
        parse_config(text)
    return str(e.value)


# --- ports of flannel's pkg/subnet/config_test.go ---------------------------


def test_config_defaults():
    # Go: TestConfigDefaults (lower-case "network" key on purpose)
    cfg = parse_config('{ "network": "10.3.0.0/16" }')
    assert str(cfg.network) == "10.3.0.0/16"
    assert str(cfg.subnet_min) == "10.3.1.0"
    assert str(cfg.subnet_max) == "10.3.255.0"
    assert cfg.subnet_len == 24


def test_ipv6_config_defaults():
    # Go: TestIPv6ConfigDefaults
    cfg = parse_config('{ "enableIPv6": true, "ipv6Network": "fc00::/48", "enableIPv4": false }')
    assert str(cfg.ipv6_network) == "fc00::/48"
    assert str(cfg.ipv6_subnet_min) == "fc00:0:0:1::"
    assert str(cfg.ipv6_subnet_max) == "fc00:0:0:ffff::"
    assert cfg.ipv6_subnet_len == 64
    assert cfg.enable_ipv4 is False and cfg.network is None


def test_config_overrides():
    # Go: TestConfigOverrides (ParseConfig only, no CheckNetworkConfig)
    s = '{ "Network": "10.3.0.0/16", "SubnetMin": "10.3.5.0", "SubnetMax": "10.3.8.0", "SubnetLen": 28 }'
    cfg = decode_config(s)
    assert str(cfg.network) == "10.3.0.0/16"
    assert str(cfg.subnet_min) == "10.3.5.0"
    assert str(cfg.subnet_max) == "10.3.8.0"
    assert cfg.subnet_len == 28
    # and checking keeps the explicit values
    check_network_config(cfg)
    assert (str(cfg.subnet_min), str(cfg.subnet_max), cfg.subnet_len) == ("10.3.5.0", "10.3.8.0", 28)


def test_ipv6_config_overrides():
    # Go: TestIPv6ConfigOverrides
    s = ('{ "EnableIPv6": true, "IPv6Network": "fc00::/48", "IPv6SubnetMin": "fc00:0:0:1::", '
         '"IPv6SubnetMax": "fc00:0:0:f::", "IPv6SubnetLen": 124, "enableIPv4": false }')
    cfg = decode_config(s)
    assert str(cfg.ipv6_network) == "fc00::/48"
    assert str(cfg.ipv6_subnet_min) == "fc00:0:0:1::"
    assert str(cfg.ipv6_subnet_max) == "fc00:0:0:f::"
    assert cfg.ipv6_subnet_len == 124
    check_network_config(cfg)
    assert cfg.ipv6_subnet_len == 124


# --- defaults from the reference ------------------------------------------


def subnets_of(cfg):
    step = 1 << (32 - cfg.subnet_len)
    return [str(IPv4Address(i)) for i in range(int(cfg.subnet_min), int(cfg.subnet_max) + 1, step)]


def test_slash22_gives_three_usable_slash24():
    cfg = parse_config('{"Network":"10.5.0.0/22"}')
    assert cfg.subnet_len == 24
    assert subnets_of(cfg) == ["10.5.1.0", "10.5.2.0", "10.5.3.0"]


def test_slash28_gives_subnetlen_30():
    cfg = parse_config('{"Network":"10.9.0.0/28"}')
    assert cfg.subnet_len == 30
    assert subnets_of(cfg) == ["10.9.0.4", "10.9.0.8", "10.9.0.12"]


@pytest.mark.parametrize("net,expected", [("10.0.0.0/8", 24), ("10.0.0.0/22", 24), ("10.0.0.0/23", 25),
                                          ("10.0.0.0/26", 28), ("10.0.0.0/28", 30)])
def test_default_subnet_len(net, expected):
    assert parse_config('{"Network":"%s"}' % net).subnet_len == expected
    assert default_subnet_len(IPv4Network(net)) == expected


def test_host_bits_of_network_are_cleared():
    # Go net.ParseCIDR returns the network, not the address
    cfg = parse_config('{"Network":"10.3.7.9/16"}')
    assert cfg.network == IPv4Network("10.3.0.0/16")
    assert str(cfg.subnet_min) == "10.3.1.0"


def test_explicit_zero_subnet_min_means_default():
    cfg = parse_config('{"Network":"10.3.0.0/16","SubnetMin":"0.0.0.0","SubnetMax":"0.0.0.0"}')
    assert (str(cfg.subnet_min), str(cfg.subnet_max)) == ("10.3.1.0", "10.3.255.0")


def test_top_of_address_space():
    cfg = parse_config('{"Network":"255.255.0.0/16"}')
    assert str(cfg.subnet_max) == "255.255.255.0"


# --- CheckNetworkConfig errors, in flannel's order ---------------------------


@pytest.mark.parametrize("text,message", [
    ('{}', "please define a correct Network parameter in the flannel config"),
    ('null', "please define a correct Network parameter in the flannel config"),
    ('{"Network":"0.0.0.0/0"}', "please define a correct Network parameter in the flannel config"),
    ('{"Network":"10.0.0.0/8","SubnetLen":31}', "SubnetLen must be less than /31"),
    ('{"Network":"10.0.0.0/8","SubnetLen":32}', "SubnetLen must be less than /31"),
    ('{"Network":"10.0.0.0/24","SubnetLen":25}', "network must be able to accommodate at least four subnets"),
    ('{"Network":"10.0.0.0/29","SubnetLen":30}', "network must be able to accommodate at least four subnets"),
    ('{"Network":"10.0.0.0/29"}', "network is too small. Minimum useful network prefix is /28"),
    ('{"Network":"10.0.0.0/32"}', "network is too small. Minimum useful network prefix is /28"),
    ('{"Network":"10.3.0.0/16","SubnetMin":"10.4.0.0"}', "SubnetMin is not in the range of the Network"),
    ('{"Network":"10.3.0.0/16","SubnetMax":"10.2.255.0"}', "SubnetMax is not in the range of the Network"),
    ('{"Network":"10.3.0.0/16","SubnetMin":"10.3.1.5"}', "SubnetMin is not on a SubnetLen boundary: 10.3.1.5"),
    ('{"Network":"10.3.0.0/16","SubnetMax":"10.3.9.128"}', "SubnetMax is not on a SubnetLen boundary: 10.3.9.128"),
    ('{"Network":"10.3.0.0/16","SubnetLen":20,"SubnetMin":"10.3.8.0"}',
     "SubnetMin is not on a SubnetLen boundary: 10.3.8.0"),
])
def test_check_errors(text, message):
    assert err(text) == message


def test_check_order_min_range_before_max_range():
    assert err('{"Network":"10.3.0.0/16","SubnetMin":"9.0.0.0","SubnetMax":"9.0.0.0"}') == \
        "SubnetMin is not in the range of the Network"


def test_check_order_range_before_alignment():
    # SubnetMin is misaligned, SubnetMax is out of range: range is checked first
    assert err('{"Network":"10.3.0.0/16","SubnetMin":"10.3.1.7","SubnetMax":"11.0.0.0"}') == \
        "SubnetMax is not in the range of the Network"


def test_check_order_subnetlen_before_network_size():
    # with an explicit SubnetLen the /28 rule is never reached
    assert err('{"Network":"10.0.0.0/30","SubnetLen":30}') == \
        "network must be able to accommodate at least four subnets"


def test_ipv4_disabled_skips_ipv4_checks():
    cfg = parse_config('{"EnableIPv4": false}')
    assert cfg.network is None and cfg.subnet_len == 0


def test_check_fills_dataclass_in_place():
    cfg = Config(network=IPv4Network("10.8.0.0/16"))
    check_network_config(cfg)
    assert (cfg.subnet_len, str(cfg.subnet_min), str(cfg.subnet_max)) == (24, "10.8.1.0", "10.8.255.0")
    assert cfg.subnet_size() == 256


@pytest.mark.parametrize("text,message", [
    ('{"EnableIPv6":true,"EnableIPv4":false}', "please define a correct IPv6Network parameter in the flannel config"),
    ('{"EnableIPv6":true,"EnableIPv4":false,"IPv6Network":"fc00::/48","IPv6SubnetLen":127}',
     "SubnetLen must be less than /127"),
    ('{"EnableIPv6":true,"EnableIPv4":false,"IPv6Network":"fc00::/48","IPv6SubnetLen":49}',
     "network must be able to accommodate at least four subnets"),
    ('{"EnableIPv6":true,"EnableIPv4":false,"IPv6Network":"fc00::/125"}',
     "IPv6Network is too small. Minimum useful network prefix is /124"),
    ('{"EnableIPv6":true,"EnableIPv4":false,"IPv6Network":"fc00::/48","IPv6SubnetMin":"fd00::"}',
     "IPv6SubnetMin is not in the range of the IPv6Network"),
    ('{"EnableIPv6":true,"EnableIPv4":false,"IPv6Network":"fc00::/48","IPv6SubnetMax":"fd00::"}',
     "IPv6SubnetMax is not in the range of the IPv6Network"),
    ('{"EnableIPv6":true,"EnableIPv4":false,"IPv6Network":"fc00::/48","IPv6SubnetMin":"fc00::1"}',
     "IPv6SubnetMin is not on a SubnetLen boundary: fc00::1"),
    ('{"EnableIPv6":true,"EnableIPv4":false,"IPv6Network":"fc00::/48","IPv6SubnetMax":"fc00:0:0:5::1"}',
     "IPv6SubnetMax is not on a SubnetLen boundary: fc00:0:0:5::1"),
])
def test_ipv6_check_errors(text, message):
    assert err(text) == message


def test_ipv6_small_network_gets_prefix_plus_two():
    cfg = parse_config('{"EnableIPv6":true,"EnableIPv4":false,"IPv6Network":"fc00::/120"}')
    assert cfg.ipv6_subnet_len == 122
    assert cfg.ipv6_subnet_min == IPv6Address("fc00::40")
    assert cfg.ipv6_subnet_max == IPv6Address("fc00::c0")
    assert cfg.ipv6_network == IPv6Network("fc00::/120")


def test_dual_stack_checks_both():
    cfg = parse_config('{"Network":"10.1.0.0/16","EnableIPv6":true,"IPv6Network":"fd00::/56"}')
    assert cfg.subnet_len == 24 and cfg.ipv6_subnet_len == 64
    assert str(cfg.ipv6_subnet_min) == "fd00:0:0:1::"


# --- JSON decoding like Go ---------------------------------------------------


def test_field_names_case_insensitive_and_unknown_ignored():
    cfg = parse_config('{"NETWORK":"10.1.0.0/16","subnetlen":26,"sUbNeTmIn":"10.1.0.64","Whatever":[1,2]}')
    assert cfg.network == IPv4Network("10.1.0.0/16")
    assert cfg.subnet_len == 26
    assert str(cfg.subnet_min) == "10.1.0.64"


def test_duplicate_keys_last_wins():
    cfg = parse_config('{"Network":"10.1.0.0/16","network":"10.2.0.0/16"}')
    assert cfg.network == IPv4Network("10.2.0.0/16")


def test_backendtype_key_is_ignored():
    # BackendType is `json:"-"` in Go: it cannot be set from the config
    cfg = parse_config('{"Network":"10.1.0.0/16","BackendType":"vxlan"}')
    assert cfg.backend_type == "udp"


def test_raw_keeps_document():
    cfg = parse_config('{"Network":"10.1.0.0/16","Backend":{"Type":"vxlan","VNI":4},"x":1}')
    assert cfg.raw == {"Network": "10.1.0.0/16", "Backend": {"Type": "vxlan", "VNI": 4}, "x": 1}


@pytest.mark.parametrize("text,message", [
    ('', "unexpected end of JSON input"),
    ('   ', "unexpected end of JSON input"),
    ('{"Network":', "unexpected end of JSON input"),
    ('{"Network":"10.0.0.0/8"', "unexpected end of JSON input"),
    ('{"Network":"10.0', "unexpected end of JSON input"),
    ('{"Network": "10.3.0.0/16",}', "invalid character '}' looking for beginning of object key string"),
    ("{'Network': '10.3.0.0/16'}", "invalid character '\\'' looking for beginning of object key string"),
    ('{Network: 1}', "invalid character 'N' looking for beginning of object key string"),
    ('{"Network" "x"}', "invalid character '\"' after object key"),
    ('{"a":1 "b":2}', "invalid character '\"' after object key:value pair"),
    ('{"a":[1 2]}', "invalid character '2' after array element"),
    ('{"a":[1,]}', "invalid character ']' looking for beginning of value"),
    ('{} x', "invalid character 'x' after top-level value"),
    ('{"a":01}', "invalid character '1' after object key:value pair"),
    ('{"a":tx}', "invalid character 'x' in literal true (expecting 'r')"),
    ('{"a":nul}', "invalid character '}' in literal null (expecting 'l')"),
    ('tru', "invalid character ' ' in literal true (expecting 'e')"),
    ('{"a":-}', "invalid character '}' in numeric literal"),
    ('{"a":1.}', "invalid character '}' after decimal point in numeric literal"),
    ('{"a":1e}', "invalid character '}' in exponent of numeric literal"),
    ('-', "invalid character ' ' in numeric literal"),
    ('{"a":"\\x"}', "invalid character 'x' in string escape code"),
    ('{"a":"\\u12g4"}', "invalid character 'g' in \\u hexadecimal character escape"),
    ('{"a":"x\ny"}', "invalid character '\\n' in string literal"),
    ('{"a":"x\ty"}', "invalid character '\\t' in string literal"),
    ('{"a":"\x01"}', "invalid character '\\x01' in string literal"),
    ('\ufeff{}', "invalid character 'ï' looking for beginning of value"),
    ('{"a":NaN}', "invalid character 'N' looking for beginning of value"),
    ('{"a":\\}', "invalid character '\\\\' looking for beginning of value"),
])
def test_go_syntax_errors(text, message):
    assert err(text) == message


@pytest.mark.parametrize("text,message", [
    ('[]', "json: cannot unmarshal array into Go value of type subnet.Config"),
    ('"x"', "json: cannot unmarshal string into Go value of type subnet.Config"),
    ('5', "json: cannot unmarshal number into Go value of type subnet.Config"),
    ('{"Network":"10.3.0.0/16","SubnetLen":"24"}',
     "json: cannot unmarshal string into Go struct field Config.SubnetLen of type uint"),
    ('{"Network":"10.3.0.0/16","SubnetLen":-1}',
     "json: cannot unmarshal number -1 into Go struct field Config.SubnetLen of type uint"),
    ('{"Network":"10.3.0.0/16","SubnetLen":24.0}',
     "json: cannot unmarshal number 24.0 into Go struct field Config.SubnetLen of type uint"),
    ('{"Network":"10.3.0.0/16","SubnetLen":{}}',
     "json: cannot unmarshal object into Go struct field Config.SubnetLen of type uint"),
    ('{"Network":"10.3.0.0/16","EnableIPv4":"yes"}',
     "json: cannot unmarshal string into Go struct field Config.EnableIPv4 of type bool"),
    ('{"Network":"10.3.0.0/16","enableipv6":1}',
     "json: cannot unmarshal number into Go struct field Config.EnableIPv6 of type bool"),
    # the first type error is the one reported
    ('{"SubnetLen":true,"EnableIPv4":1}',
     "json: cannot unmarshal bool into Go struct field Config.SubnetLen of type uint"),
    # flannel's own decoders (IP4Net, IP4) stop at once and win over a saved type error
    ('{"SubnetLen":"x","Network":"bad"}', "invalid CIDR address: bad"),
    ('{"Network":"10.3.0.0"}', "invalid CIDR address: 10.3.0.0"),
    ('{"Network":"10.3.0.0/33"}', "invalid CIDR address: 10.3.0.0/33"),
    ('{"Network":"10.3.0.0/255.255.0.0"}', "invalid CIDR address: 10.3.0.0/255.255.0.0"),
    ('{"Network":"010.3.0.0/16"}', "invalid CIDR address: 010.3.0.0/16"),
    ('{"Network":10}', "invalid CIDR address: 10"),
    ('{"Network":null}', "invalid CIDR address: null"),
    # flannel strips the quotes off the raw bytes without decoding escapes
    ('{"Network":"10.3.0.0\\/16"}', "invalid CIDR address: 10.3.0.0\\/16"),
    ('{"Network":"fc00::/48"}', "invalid IPv4 CIDR format"),
    ('{"Network":"10.3.0.0/16","SubnetMin":"10.3.1"}', "invalid IP address format"),
    ('{"Network":"10.3.0.0/16","SubnetMin":"fc00::"}', "invalid IPv4 address format"),
    ('{"Network":"10.3.0.0/16","SubnetMax":null}', "invalid IP address format"),
])
def test_go_decode_errors(text, message):
    assert err(text) == message


def test_null_bool_and_uint_are_ignored():
    cfg = parse_config('{"Network":"10.3.0.0/16","EnableIPv4":null,"SubnetLen":null}')
    assert cfg.enable_ipv4 is True and cfg.subnet_len == 24


def test_ipv4_mapped_subnet_min_is_accepted_as_ipv4():
    cfg = parse_config('{"Network":"10.3.0.0/16","SubnetMin":"::ffff:10.3.4.0"}')
    assert cfg.subnet_min == IPv4Address("10.3.4.0")


# --- Backend type (parseBackendType) ------------------------------------------


@pytest.mark.parametrize("backend,expected", [
    (None, "udp"),                       # no Backend at all: udp, not vxlan
    ('{"Type":"vxlan"}', "vxlan"),
    ('{"type":"VXLAN"}', "vxlan"),      # key case-insensitive, value lower-cased
    ('{"Type":"host-gw","DirectRouting":true}', "host-gw"),
    ('{}', ""),                          # later "unknown backend type: "
    ('{"Type":null}', ""),
    ('null', ""),
    ('{"Type":"vxlan","type":"udp"}', "udp"),
])
def test_backend_type(backend, expected):
    text = '{"Network":"10.1.0.0/16"%s}' % ("" if backend is None else ',"Backend":' + backend)
    assert parse_config(text).backend_type == expected


def test_backend_dict_and_raw_text_kept():
    cfg = parse_config('{"Network":"10.1.0.0/16","Backend": {"Type": "vxlan",  "VNI": 4, "Port": 4789}}')
    assert cfg.backend == {"Type": "vxlan", "VNI": 4, "Port": 4789}
    assert cfg.backend_json == '{"Type": "vxlan",  "VNI": 4, "Port": 4789}'


def test_backend_absent_gives_empty_dict():
    cfg = parse_config('{"Network":"10.1.0.0/16"}')
    assert cfg.backend == {} and cfg.backend_json is None


@pytest.mark.parametrize("backend,message", [
    ('"vxlan"', "error decoding Backend property of config: "
                "json: cannot unmarshal string into Go value of type struct { Type string }"),
    ('["vxlan"]', "error decoding Backend property of config: "
                  "json: cannot unmarshal array into Go value of type struct { Type string }"),
    ('{"Type":1}', "error decoding Backend property of config: "
                   "json: cannot unmarshal number into Go struct field .Type of type string"),
    ('{"Type":{"a":1}}', "error decoding Backend property of config: "
                         "json: cannot unmarshal object into Go struct field .Type of type string"),
])
def test_backend_decode_errors(backend, message):
    assert err('{"Network":"10.1.0.0/16","Backend":%s}' % backend) == message


def test_known_backends_at_head():
    assert set(KNOWN_BACKENDS) == {"alloc", "extension", "host-gw", "ipip", "ipsec", "tencent-vpc",
                                   "udp", "vxlan", "wireguard"}
    assert "aws-vpc" not in KNOWN_BACKENDS and "gce" not in KNOWN_BACKENDS
    assert is_known_backend("VXLAN") and not is_known_backend("")


def test_unknown_backend_message():
    assert unknown_backend_message("Foo") == "unknown backend type: foo"
    assert unknown_backend_message("") == "unknown backend type: "


def test_bytes_input():
    assert parse_config(b'{"Network":"10.3.0.0/16"}').subnet_len == 24


# --- UI helpers ------------------------------------------------------------


def test_validate_network_cidr():
    assert validate_network_cidr("10.3.0.0/16") == IPv4Network("10.3.0.0/16")
    assert validate_network_cidr("10.3.4.5/16") == IPv4Network("10.3.0.0/16")
    assert validate_network_cidr("192.168.0.0/28") == IPv4Network("192.168.0.0/28")


@pytest.mark.parametrize("text,message", [
    ("10.3.0.0", "invalid CIDR address: 10.3.0.0"),
    ("banana", "invalid CIDR address: banana"),
    ("10.3.0.0/", "invalid CIDR address: 10.3.0.0/"),
    (" 10.3.0.0/16", "invalid CIDR address:  10.3.0.0/16"),
    ("fc00::/48", "invalid IPv4 CIDR format"),
    ("0.0.0.0/0", "please define a correct Network parameter in the flannel config"),
    ("10.0.0.0/29", "network is too small. Minimum useful network prefix is /28"),
])
def test_validate_network_cidr_errors(text, message):
    with pytest.raises(ConfigError) as e:
        validate_network_cidr(text)
    assert str(e.value) == message


def test_subnet_len_bounds():
    assert subnet_len_bounds(IPv4Network("10.0.0.0/16")) == (18, 30)
    assert subnet_len_bounds("10.0.0.0/28") == (30, 30)
    with pytest.raises(ConfigError, match="network is too small"):
        subnet_len_bounds(IPv4Network("10.0.0.0/29"))


def test_bounds_agree_with_check():
    # every SubnetLen inside the bounds passes, the ones just outside fail
    lo, hi = subnet_len_bounds("10.20.0.0/20")
    for n in range(lo, hi + 1):
        assert parse_config('{"Network":"10.20.0.0/20","SubnetLen":%d}' % n).subnet_len == n
    assert err('{"Network":"10.20.0.0/20","SubnetLen":%d}' % (lo - 1)) == \
        "network must be able to accommodate at least four subnets"
    assert err('{"Network":"10.20.0.0/20","SubnetLen":%d}' % (hi + 1)) == "SubnetLen must be less than /31"


# --- Go JSON helpers ---------------------------------------------------------


def test_go_parse_cidr():
    assert go_parse_cidr("10.5.72.1/24") == IPv4Network("10.5.72.0/24")
    assert go_parse_cidr("fd00::1/64") == IPv6Network("fd00::/64")
    assert go_parse_cidr("10.0.0.0/008") == IPv4Network("10.0.0.0/8")
    for bad in ("10.0.0.0", "10.0.0.0/-1", "fe80::1%eth0/64", "10.0.0.0/8/8"):
        with pytest.raises(ValueError, match="invalid CIDR address"):
            go_parse_cidr(bad)


def test_go_json_marshal_is_compact_and_html_safe():
    assert go_json_marshal({"VNI": 1, "VtepMAC": "c6:d2:32:6f:8f:44"}) == '{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}'
    assert go_json_string("<a&b>") == '"\\u003ca\\u0026b\\u003e"'
    assert go_json_marshal(["é", "\u2028"]) == '["é","\\u2028"]'


def test_go_json_parse_depth():
    with pytest.raises(ConfigError, match=r"^invalid character '\[' exceeded max depth$"):
        parse_config("[" * 5000 + "]" * 5000)
    # the counter itself (Go's limit is 10000; lowered here to test it)
    from labkit.flannel import config as config_mod
    scanner = config_mod._GoScanner(b'[[{"a":[1]}]]')
    scanner.MAX_DEPTH = 3
    with pytest.raises(config_mod.GoJSONError) as e:
        scanner.document()
    assert str(e.value) == "invalid character '[' exceeded max depth"
    for ok in (b'[[{"a":1}],[{"b":2}]]', b'[{},[],{},[],[[]]]'):
        scanner = config_mod._GoScanner(ok)
        scanner.MAX_DEPTH = 3
        assert scanner.document().kind == "array"


def test_go_json_parse_keeps_raw_and_pairs():
    node = go_json_parse(b' {"a" : [1, 2.50], "a": null} ')
    assert node.kind == "object"
    assert [k for k, _ in node.value] == ["a", "a"]
    assert node.value[0][1].raw == b"[1, 2.50]"
    assert node.value[0][1].value[1].value == "2.50"
