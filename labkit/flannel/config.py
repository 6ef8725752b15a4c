"""The flannel network config: parsing and validation.

Mirrors ``pkg/subnet/config.go`` (``ParseConfig``, ``parseBackendType``,
``CheckNetworkConfig``) of flannel-io/flannel at HEAD.

flanneld reads one JSON document from etcd (``<prefix>/config``) and refuses
to start when it is wrong, so every error message here is the exact text
flanneld would log after ``Couldn't fetch network config: ``.

The JSON is decoded the way Go's ``encoding/json`` decodes it, because that
is what makes some configs surprising:

* field names match case-insensitively (``"network"`` works);
* unknown fields are silently ignored (a typo like ``"Subnetlen"`` still
  matches, but ``"SubnetLength"`` is just ignored);
* syntax and type errors use Go's wording (``invalid character ...``,
  ``json: cannot unmarshal ...``).

The small Go-JSON helpers at the top (``go_json_parse``, ``go_json_string``,
``go_json_marshal``, ``go_parse_cidr``) are shared with ``subnet.py``.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import re
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Any, NoReturn, TypeAlias, cast

# backend names, and flannel's words for an unknown one, live in the backend catalogue
from .backends.catalogue import KNOWN_BACKENDS, is_known_backend, unknown_backend_message

__all__ = [
    "ConfigError",
    "Config",
    "KNOWN_BACKENDS",
    "parse_config",
    "decode_config",
    "check_network_config",
    "validate_network_cidr",
    "subnet_len_bounds",
    "default_subnet_len",
    "unknown_backend_message",
    "is_known_backend",
    "GoJSONError",
    "go_json_parse",
    "go_json_string",
    "go_json_marshal",
    "go_parse_cidr",
    "match_go_fields",
    "parse_ip4",
    "parse_ip6",
]

class ConfigError(ValueError):
    """A config flanneld would reject; ``str(err)`` is flannel's own message."""


# ---------------------------------------------------------------------------
# JSON as Go's encoding/json sees it
# ---------------------------------------------------------------------------


class GoJSONError(ValueError):
    """A JSON error worded like Go's encoding/json."""


@dataclass
class _Node:
    """One JSON value: its kind, its raw bytes, and its decoded value.

    Go hands custom decoders (``UnmarshalJSON``) the *raw* bytes of a value,
    so we keep them next to the decoded value.
    kind is one of: object, array, string, number, bool, null.
    For an object, value is a list of (key, _Node) pairs in document order
    (duplicates kept, as Go processes them one after another).
    For a number, value is its literal text.
    """

    kind: str
    raw: bytes
    value: _Value

    def members(self) -> list[tuple[str, _Node]]:
        """An object's (key, node) pairs; only for kind "object"."""
        assert self.kind == "object"
        return cast("list[tuple[str, _Node]]", self.value)

    def text(self) -> str:
        """A string's decoded text, or a number's literal."""
        assert isinstance(self.value, str)
        return self.value


# what _Node.value holds, by kind: object, array, string or number, bool, null
_Value: TypeAlias = "list[tuple[str, _Node]] | list[_Node] | str | bool | None"


_WS = b" \t\r\n"
_HEX = b"0123456789abcdefABCDEF"
_DIGITS = b"0123456789"


def _quote_char(c: int) -> str:
    """Go's way of showing one offending byte in a syntax error."""
    if c == ord("'"):
        return "'\\''"
    if c == ord('"'):
        return "'\"'"
    ch = chr(c)
    named = {7: "\\a", 8: "\\b", 12: "\\f", 10: "\\n", 13: "\\r", 9: "\\t", 11: "\\v", 92: "\\\\"}
    if c in named:
        body = named[c]
    elif c < 0x20 or c == 0x7F:
        body = "\\x%02x" % c
    elif ch.isprintable():
        body = ch
    else:
        body = "\\u%04x" % c
    return "'" + body + "'"


class _GoScanner:
    """A recursive-descent JSON reader that fails where Go's scanner fails.

    Go checks the whole document byte by byte before decoding anything, and
    names the first bad byte and what it was looking for. At end of input it
    behaves as if one space had been read: inside a number, literal or
    escape that space is the "invalid character"; elsewhere the message is
    ``unexpected end of JSON input``.
    """

    MAX_DEPTH = 10000  # Go's maxNestingDepth

    def __init__(self, data: bytes) -> None:
        self.b = data
        self.i = 0
        self.depth = 0

    def _enter(self) -> None:
        self.depth += 1
        if self.depth > self.MAX_DEPTH:
            self._fail("exceeded max depth", False)

    def _fail(self, what: str, ws_ok: bool) -> NoReturn:
        if self.i >= len(self.b):
            if ws_ok:
                raise GoJSONError("unexpected end of JSON input")
            c = 0x20
        else:
            c = self.b[self.i]
        raise GoJSONError(f"invalid character {_quote_char(c)} {what}")

    def _peek(self) -> int | None:
        return self.b[self.i] if self.i < len(self.b) else None

    def _skip_ws(self) -> None:
        while self.i < len(self.b) and self.b[self.i] in _WS:
            self.i += 1

    def document(self) -> _Node:
        node = self.value()
        self._skip_ws()
        if self.i < len(self.b):
            self._fail("after top-level value", True)
        return node

    def value(self) -> _Node:
        self._skip_ws()
        c = self._peek()
        if c is None:
            raise GoJSONError("unexpected end of JSON input")
        start = self.i
        if c == ord("{"):
            return self._object(start)
        if c == ord("["):
            return self._array(start)
        if c == ord('"'):
            return self._string()
        if c == ord("-") or c in _DIGITS:
            return self._number(start)
        for word, kind, val in ((b"true", "bool", True), (b"false", "bool", False), (b"null", "null", None)):
            if c == word[0]:
                self._literal(word)
                return _Node(kind, self.b[start:self.i], val)
        self._fail("looking for beginning of value", True)

    def _elements(self, close: int, after: str) -> Iterator[None]:
        """What objects and arrays share in Go's scanner: the opening byte,
        then elements separated by commas up to the closing byte.

        Yields once for each element, which the caller reads; a generator,
        so it adds no stack frame per nesting level.
        """
        self._enter()
        self.i += 1
        self._skip_ws()
        if self._peek() != close:
            yield
            self._skip_ws()
            while self._peek() == ord(","):
                self.i += 1
                yield
                self._skip_ws()
            if self._peek() != close:
                self._fail(after, True)
        self.i += 1
        self.depth -= 1

    def _object(self, start: int) -> _Node:
        pairs: list[tuple[str, _Node]] = []
        for _ in self._elements(ord("}"), "after object key:value pair"):
            self._skip_ws()
            if self._peek() != ord('"'):
                self._fail("looking for beginning of object key string", True)
            key = self._string().text()
            self._skip_ws()
            if self._peek() != ord(":"):
                self._fail("after object key", True)
            self.i += 1
            pairs.append((key, self.value()))
        return _Node("object", self.b[start:self.i], pairs)

    def _array(self, start: int) -> _Node:
        items: list[_Node] = []
        for _ in self._elements(ord("]"), "after array element"):
            items.append(self.value())
        return _Node("array", self.b[start:self.i], items)

    def _string(self) -> _Node:
        start = self.i
        self.i += 1  # opening quote
        while True:
            c = self._peek()
            if c is None:
                self._fail("in string literal", True)
            if c == ord('"'):
                self.i += 1
                break
            if c == ord("\\"):
                self.i += 1
                e = self._peek()
                if e is not None and e in b'bfnrt\\/"':
                    self.i += 1
                elif e == ord("u"):
                    self.i += 1
                    for _ in range(4):
                        h = self._peek()
                        if h is None or h not in _HEX:
                            self._fail("in \\u hexadecimal character escape", False)
                        self.i += 1
                else:
                    self._fail("in string escape code", False)
                continue
            if c < 0x20:
                self._fail("in string literal", False)
            self.i += 1
        raw = self.b[start:self.i]
        text = json.loads(raw.decode("utf-8", "replace"))
        # Go turns unpaired surrogate escapes into U+FFFD
        text = re.sub("[\ud800-\udfff]", "\ufffd", text)
        return _Node("string", raw, text)

    def _digits(self) -> None:
        while (c := self._peek()) is not None and c in _DIGITS:
            self.i += 1

    def _number(self, start: int) -> _Node:
        if self._peek() == ord("-"):
            self.i += 1
            c = self._peek()
            if c is None or c not in _DIGITS:
                self._fail("in numeric literal", False)
        if self._peek() == ord("0"):
            self.i += 1
        else:
            self._digits()
        if self._peek() == ord("."):
            self.i += 1
            c = self._peek()
            if c is None or c not in _DIGITS:
                self._fail("after decimal point in numeric literal", False)
            self._digits()
        if self._peek() in (ord("e"), ord("E")):
            self.i += 1
            if self._peek() in (ord("+"), ord("-")):
                self.i += 1
            c = self._peek()
            if c is None or c not in _DIGITS:
                self._fail("in exponent of numeric literal", False)
            self._digits()
        raw = self.b[start:self.i]
        return _Node("number", raw, raw.decode("ascii"))

    def _literal(self, word: bytes) -> None:
        self.i += 1
        for expected in word[1:]:
            if self._peek() != expected:
                self._fail(f"in literal {word.decode()} (expecting {_quote_char(expected)})", False)
            self.i += 1


def _as_bytes(text: str | bytes | bytearray) -> bytes:
    # Go reads the config as bytes; Python text is turned back into UTF-8
    if isinstance(text, (bytes, bytearray)):
        return bytes(text)
    return str(text).encode("utf-8", "surrogatepass")


def go_json_parse(text: str | bytes | bytearray) -> _Node:
    """Parse JSON text; raise GoJSONError with Go's syntax-error wording.

    Go refuses nesting deeper than 10000 levels. Python's recursion limit
    (a few hundred levels here) comes first; it is reported with the same
    words. No real config is nested that deep.
    """
    scanner = _GoScanner(_as_bytes(text))
    try:
        return scanner.document()
    except RecursionError:
        c = scanner.b[min(scanner.i, len(scanner.b) - 1)]
        raise GoJSONError(f"invalid character {_quote_char(c)} exceeded max depth") from None


def _fold(name: str) -> str:
    """Go's case folding for matching JSON keys to struct fields."""
    out = []
    for ch in name:
        low = ch.lower()
        low = low if len(low) == 1 else ch
        up = low.upper()
        out.append(up if len(up) == 1 else low)
    return "".join(out)


def match_go_fields(pairs: Iterable[tuple[str, _Node]], field_names: Collection[str]) -> Iterator[tuple[str, _Node]]:
    """Yield (go_field_name, node) for each key that names a struct field.

    An exact match wins, otherwise a case-insensitive one; keys that name no
    field are ignored, like in Go.
    """
    folded = {_fold(n): n for n in field_names}
    for key, node in pairs:
        if key in field_names:
            yield key, node
        elif _fold(key) in folded:
            yield folded[_fold(key)], node


def _type_error(node: _Node, struct: str, fieldname: str, gotype: str) -> str:
    value = node.kind
    if node.kind == "number" and gotype.startswith("uint"):
        value = "number " + node.text()
    if struct or fieldname:
        return f"json: cannot unmarshal {value} into Go struct field {struct}.{fieldname} of type {gotype}"
    return f"json: cannot unmarshal {value} into Go value of type {gotype}"


def _trim_quotes(raw: bytes) -> str:
    """What flannel's UnmarshalJSON helpers do first: strip every leading and
    trailing double quote from the raw bytes (escapes are *not* decoded)."""
    return raw.strip(b'"').decode("utf-8", "replace")


_GO_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def _go_escape_html(s: str) -> str:
    # these characters only ever occur inside JSON strings, so a plain
    # replace is safe
    for k, v in _GO_ESCAPES.items():
        s = s.replace(k, v)
    return s


def go_json_string(s: str) -> str:
    """A JSON string literal as Go's json.Marshal writes it (HTML-safe)."""
    return _go_escape_html(json.dumps(s, ensure_ascii=False))


def go_json_marshal(obj: Any) -> str:
    """Compact JSON like Go's json.Marshal (no spaces, <>& escaped).

    Dict key order is kept (Go keeps the bytes of a json.RawMessage as they
    were). Floats are written the Python way, which can differ from the
    original literal; integers round-trip exactly.
    """
    return _go_escape_html(json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False))


def go_parse_cidr(text: str) -> IPv4Network | IPv6Network:
    """Parse "addr/len" the way Go's net.ParseCIDR does.

    Returns an IPv4Network or IPv6Network with the host bits cleared
    (``10.5.72.1/24`` gives ``10.5.72.0/24``). Raises ValueError with Go's
    message ``invalid CIDR address: <text>``. Unlike Python's ipaddress it
    rejects a missing prefix and netmask notation.
    """
    bad = ValueError(f"invalid CIDR address: {text}")
    addr, sep, bits = text.partition("/")
    if not sep or not re.fullmatch(r"[0-9]+", bits, re.ASCII) or "%" in addr:
        raise bad
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        raise bad from None
    n = int(bits)
    if n > ip.max_prefixlen:
        raise bad
    return ipaddress.ip_network((ip, n), strict=False)


# ---------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------


@dataclass
class Config:
    """flannel's subnet.Config.

    IPv4 fields are the lab's focus. IPv6 fields are parsed and validated
    too (flannel's IPv6 branch of CheckNetworkConfig), but an IPv4 CIDR in
    ``IPv6Network`` is rejected here while flannel would accept a
    meaningless value.

    ``backend_type`` is lower-cased, as flannel's backend manager looks it
    up (``GetBackend`` calls strings.ToLower). ``backend`` is the raw
    Backend object, ``backend_json`` its exact JSON text (flannel keeps it as
    json.RawMessage and hands it to the backend), ``raw`` the whole decoded
    document.
    """

    network: IPv4Network | None = None
    subnet_len: int = 0
    subnet_min: IPv4Address | None = None
    subnet_max: IPv4Address | None = None
    enable_ipv4: bool = True
    enable_ipv6: bool = False
    enable_nftables: bool = False
    ipv6_network: IPv6Network | None = None
    ipv6_subnet_len: int = 0
    ipv6_subnet_min: IPv6Address | None = None
    ipv6_subnet_max: IPv6Address | None = None
    backend_type: str = ""
    backend: dict[str, Any] = field(default_factory=dict)
    backend_json: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    def subnet_size(self) -> int:
        """Number of addresses in one node's subnet."""
        return 1 << (32 - self.subnet_len)


# Go field name -> kind, in the struct's order (pkg/subnet/config.go).
# BackendType is tagged `json:"-"` in Go, so a "BackendType" key is ignored.
_CONFIG_FIELDS = {
    "EnableIPv4": "bool",
    "EnableIPv6": "bool",
    "EnableNFTables": "bool",
    "Network": "ip4net",
    "IPv6Network": "ip6net",
    "SubnetMin": "ip4",
    "SubnetMax": "ip4",
    "IPv6SubnetMin": "ip6ptr",
    "IPv6SubnetMax": "ip6ptr",
    "SubnetLen": "uint",
    "IPv6SubnetLen": "uint",
    "Backend": "raw",
}

_ATTR = {
    "EnableIPv4": "enable_ipv4",
    "EnableIPv6": "enable_ipv6",
    "EnableNFTables": "enable_nftables",
    "Network": "network",
    "IPv6Network": "ipv6_network",
    "SubnetMin": "subnet_min",
    "SubnetMax": "subnet_max",
    "IPv6SubnetMin": "ipv6_subnet_min",
    "IPv6SubnetMax": "ipv6_subnet_max",
    "SubnetLen": "subnet_len",
    "IPv6SubnetLen": "ipv6_subnet_len",
}


@functools.lru_cache(maxsize=4096)
def parse_ip4(text: str) -> IPv4Address:
    """flannel's ip.ParseIP4: any IP Go can parse, as long as it is IPv4
    (an IPv4-mapped IPv6 address counts). Messages are flannel's. (Remembered: every
    peer's PublicIP is read at every listing; an IPv4Address never changes.)"""
    try:
        return IPv4Address(text)
    except ValueError:
        pass
    try:
        v6 = IPv6Address(text)
    except ValueError:
        raise ValueError("invalid IP address format") from None
    if v6.scope_id is not None:
        raise ValueError("invalid IP address format")
    if v6.ipv4_mapped is not None:
        return v6.ipv4_mapped
    raise ValueError("invalid IPv4 address format")


def parse_ip6(text: str) -> IPv6Address:
    """flannel's ip.ParseIP6: any IP Go can parse; IPv4 becomes ::ffff:a.b.c.d."""
    try:
        return IPv6Address("::ffff:" + str(IPv4Address(text)))
    except ValueError:
        pass
    try:
        v6 = IPv6Address(text)
    except ValueError:
        raise ValueError("invalid IP address format") from None
    if v6.scope_id is not None:
        raise ValueError("invalid IP address format")
    return v6


def _decode_field(cfg: Config, name: str, kind: str, node: _Node, saved: list[str]) -> None:
    """Store one JSON value into cfg like Go's decoder would.

    Custom decoders (IP4Net, IP4, ...) get the raw bytes, even ``null``, and
    their errors stop decoding at once. Plain type mismatches (a string for
    SubnetLen) are remembered and decoding goes on; Go reports the first
    one at the end.
    """
    if kind in ("bool", "uint"):
        if node.kind == "null":
            return
        if kind == "bool" and node.kind == "bool":
            setattr(cfg, _ATTR[name], node.value)
            return
        if kind == "uint" and node.kind == "number" and re.fullmatch(r"[0-9]+", node.text()):
            n = int(node.text())
            if n < 1 << 64:
                setattr(cfg, _ATTR[name], n)
                return
        saved.append(_type_error(node, "Config", name, kind))
        return
    text = _trim_quotes(node.raw)
    try:
        if kind == "ip4net":
            net = go_parse_cidr(text)
            if not isinstance(net, IPv4Network):
                raise ValueError("invalid IPv4 CIDR format")
            cfg.network = net
        elif kind == "ip6net":
            net6 = go_parse_cidr(text)
            if not isinstance(net6, IPv6Network):
                raise ValueError("invalid IPv6 CIDR format")  # labkit's own message
            cfg.ipv6_network = net6
        elif kind == "ip4":
            setattr(cfg, _ATTR[name], parse_ip4(text))
        elif kind == "ip6ptr":
            # a Go pointer field: null sets it to nil without calling the decoder
            setattr(cfg, _ATTR[name], None if node.kind == "null" else parse_ip6(text))
        elif kind == "raw":
            cfg.backend_json = node.raw.decode("utf-8", "replace")
            value = json.loads(cfg.backend_json)
            cfg.backend = value if isinstance(value, dict) else {}
    except ValueError as e:
        raise ConfigError(str(e)) from None


def parse_backend_type(backend_json: str | None) -> str:
    """flannel's parseBackendType.

    No Backend property at all gives "udp" (the historical default, even
    though the docs say vxlan). A Backend without "Type" (or ``null``) gives
    "", which flanneld later rejects as ``unknown backend type: ``.
    """
    if backend_json is None or backend_json == "":
        return "udp"
    try:
        node = go_json_parse(backend_json)
    except GoJSONError as e:  # cannot happen for text that came out of a config
        raise ConfigError(f"error decoding Backend property of config: {e}") from None
    anon = "struct { Type string }"
    if node.kind == "null":
        return ""
    if node.kind != "object":
        raise ConfigError(f"error decoding Backend property of config: {_type_error(node, '', '', anon)}")
    bt = ""
    for _, sub in match_go_fields(node.members(), ("Type",)):
        if sub.kind == "null":
            continue
        if sub.kind != "string":
            msg = _type_error(sub, "", "Type", "string")
            raise ConfigError(f"error decoding Backend property of config: {msg}")
        bt = sub.text()
    return bt


def decode_config(text: str | bytes) -> Config:
    """flannel's ParseConfig alone: decode the JSON, derive the backend type,
    fill in *no* defaults and check nothing else."""
    try:
        doc = go_json_parse(text)
    except GoJSONError as e:
        raise ConfigError(str(e)) from None
    cfg = Config()
    if doc.kind == "null":
        cfg.backend_type = parse_backend_type(None)
        return cfg
    if doc.kind != "object":
        raise ConfigError(_type_error(doc, "", "", "subnet.Config"))
    cfg.raw = json.loads(doc.raw.decode("utf-8", "replace"))
    saved: list[str] = []
    for name, node in match_go_fields(doc.members(), _CONFIG_FIELDS):
        _decode_field(cfg, name, _CONFIG_FIELDS[name], node, saved)
    if saved:
        raise ConfigError(saved[0])
    cfg.backend_type = parse_backend_type(cfg.backend_json).lower()
    return cfg


def parse_config(text: str | bytes) -> Config:
    """Decode a network config and validate it, as the etcd subnet manager
    does in GetNetworkConfig (ParseConfig, then CheckNetworkConfig).

    Returns the Config with defaults filled in; raises ConfigError with
    flannel's message.
    """
    cfg = decode_config(text)
    check_network_config(cfg)
    return cfg


def check_network_config(cfg: Config) -> None:
    """flannel's CheckNetworkConfig, in the same order, same messages.

    Fills in SubnetLen, SubnetMin and SubnetMax when they were not given.
    Why the numbers: every node needs a /30 at least (bridge + tunnel
    address), the first subnet of the Network is never handed out (its
    .0 address would clash with the network address), so a network must
    hold at least four subnets, hence the /28 minimum.
    """
    if cfg.enable_ipv4:
        net = cfg.network
        if net is None or (int(net.network_address) == 0 and net.prefixlen == 0):
            raise ConfigError("please define a correct Network parameter in the flannel config")
        if cfg.subnet_len > 0:
            if cfg.subnet_len > 30:
                raise ConfigError("SubnetLen must be less than /31")
            if cfg.subnet_len < net.prefixlen + 2:
                raise ConfigError("network must be able to accommodate at least four subnets")
        else:
            if net.prefixlen > 28:
                raise ConfigError("network is too small. Minimum useful network prefix is /28")
            cfg.subnet_len = default_subnet_len(net)

        size = 1 << (32 - cfg.subnet_len)
        base = int(net.network_address)
        # Go uses the zero value 0.0.0.0 to mean "not given"
        if cfg.subnet_min is None or int(cfg.subnet_min) == 0:
            cfg.subnet_min = IPv4Address(base + size)
        elif cfg.subnet_min not in net:
            raise ConfigError("SubnetMin is not in the range of the Network")
        if cfg.subnet_max is None or int(cfg.subnet_max) == 0:
            cfg.subnet_max = IPv4Address(base + net.num_addresses - size)
        elif cfg.subnet_max not in net:
            raise ConfigError("SubnetMax is not in the range of the Network")

        mask = (0xFFFFFFFF << (32 - cfg.subnet_len)) & 0xFFFFFFFF
        if int(cfg.subnet_min) & mask != int(cfg.subnet_min):
            raise ConfigError(f"SubnetMin is not on a SubnetLen boundary: {cfg.subnet_min}")
        if int(cfg.subnet_max) & mask != int(cfg.subnet_max):
            raise ConfigError(f"SubnetMax is not on a SubnetLen boundary: {cfg.subnet_max}")

    if cfg.enable_ipv6:
        _check_ipv6(cfg)


# The IPv4 half above, repeated for IPv6 as flannel's CheckNetworkConfig repeats it (pkg/subnet/config.go).
def _check_ipv6(cfg: Config) -> None:
    """The IPv6 half of CheckNetworkConfig (default /64, minimum /124).

    Note that flannel reuses two IPv4-flavoured messages here
    ("SubnetLen must be less than /127", "network must be able to ...").
    """
    net = cfg.ipv6_network
    if net is None or (int(net.network_address) == 0 and net.prefixlen == 0):
        raise ConfigError("please define a correct IPv6Network parameter in the flannel config")
    if cfg.ipv6_subnet_len > 0:
        if cfg.ipv6_subnet_len > 126:
            raise ConfigError("SubnetLen must be less than /127")
        if cfg.ipv6_subnet_len < net.prefixlen + 2:
            raise ConfigError("network must be able to accommodate at least four subnets")
    else:
        if net.prefixlen > 124:
            raise ConfigError("IPv6Network is too small. Minimum useful network prefix is /124")
        cfg.ipv6_subnet_len = 64 if net.prefixlen <= 62 else net.prefixlen + 2

    size = 1 << (128 - cfg.ipv6_subnet_len)
    base = int(net.network_address)
    if cfg.ipv6_subnet_min is None or int(cfg.ipv6_subnet_min) == 0:
        cfg.ipv6_subnet_min = IPv6Address(base + size)
    elif cfg.ipv6_subnet_min not in net:
        raise ConfigError("IPv6SubnetMin is not in the range of the IPv6Network")
    if cfg.ipv6_subnet_max is None or int(cfg.ipv6_subnet_max) == 0:
        cfg.ipv6_subnet_max = IPv6Address(base + net.num_addresses - size)
    elif cfg.ipv6_subnet_max not in net:
        raise ConfigError("IPv6SubnetMax is not in the range of the IPv6Network")

    mask = ((1 << 128) - 1) ^ (size - 1)
    if int(cfg.ipv6_subnet_min) & mask != int(cfg.ipv6_subnet_min):
        raise ConfigError(f"IPv6SubnetMin is not on a SubnetLen boundary: {cfg.ipv6_subnet_min}")
    if int(cfg.ipv6_subnet_max) & mask != int(cfg.ipv6_subnet_max):
        raise ConfigError(f"IPv6SubnetMax is not on a SubnetLen boundary: {cfg.ipv6_subnet_max}")


def default_subnet_len(network: IPv4Network) -> int:
    """SubnetLen flannel picks when none is given: /24 for networks of /22
    or bigger, otherwise a quarter of the network (prefix + 2)."""
    return 24 if network.prefixlen <= 22 else network.prefixlen + 2


def validate_network_cidr(text: str) -> IPv4Network:
    """Check a Network value as a UI would, while the user types it.

    Parses like flannel's IP4Net (Go net.ParseCIDR, host bits cleared), then
    applies the checks of CheckNetworkConfig that depend on the network
    alone: 0.0.0.0/0 counts as "not defined", and anything smaller than a
    /28 can never work (with an explicit SubnetLen flannel words that error
    differently, but it fails either way). Surrounding spaces are not
    stripped: flannel would reject them too.
    """
    try:
        net = go_parse_cidr(text)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if not isinstance(net, IPv4Network):
        raise ConfigError("invalid IPv4 CIDR format")
    if int(net.network_address) == 0 and net.prefixlen == 0:
        raise ConfigError("please define a correct Network parameter in the flannel config")
    if net.prefixlen > 28:
        raise ConfigError("network is too small. Minimum useful network prefix is /28")
    return net


def subnet_len_bounds(network: IPv4Network | str) -> tuple[int, int]:
    """The SubnetLen values flannel accepts for this network: from prefix+2
    (at least four subnets) to 30 (SubnetLen must be less than /31).

    Accepts an IPv4Network or CIDR text; raises ConfigError for a network
    too small to have any valid SubnetLen.
    """
    net = validate_network_cidr(network) if isinstance(network, str) else network
    if net.prefixlen > 28:
        raise ConfigError("network is too small. Minimum useful network prefix is /28")
    return net.prefixlen + 2, 30
