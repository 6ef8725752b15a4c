"""The scenario file: its schema, loading, and the checks that make a bad file one line per error.

A scenario is one small YAML file (``scenarios/NAME.yaml``): the task, the lab it runs in
(LabSpec fields), the setup and the fault (steps a person would type), the checks that
judge it, hint tiers, the solution and references. Loading a file that breaks the schema
raises :class:`ScenarioError`, whose message has one line per problem::

    mtu.yaml: checks[1].expect: expected one of 'ok', 'fail'; found 'okay'

The schema is plain JSON Schema (``SCHEMA``, checked with jsonschema); what a schema cannot
say (node names exist in the lab, the lab's fields are valid, paths stay inside the node,
``hint_ref`` points at a tier) is checked after it, with the same kind of line.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from ..errors import LabError
from ..spec import LabSpec, check_target

if TYPE_CHECKING:
    import jsonschema

NAME_RE = r"^[a-z0-9][a-z0-9-]{1,47}$"
SERVICES = ["flanneld", "docker", "etcd"]
ACTIONS: dict[str, tuple[set[str], set[str]]] = {  # action: (required, optional fields)
    "stop": ({"on", "service"}, set()),
    "start": ({"on", "service"}, set()),
    "restart": ({"on", "service"}, set()),
    "write_config": ({"config"}, set()),
    "link": ({"on", "verb"}, set()),
    "delete_lease": ({"of"}, set()),
    "wait": ({"seconds"}, set()),
}
STEP_COMMON = {"note", "ignore_errors", "timeout"}

# check kind -> (required fields, optional fields); every check also has id, kind, role, show,
# hint_ref, title. The fields are described in README "Scenarios".
KINDS: dict[str, tuple[set[str], set[str]]] = {
    "ping": ({"from", "to", "expect"}, {"size", "df", "count"}),
    "connectivity": ({"expect"}, {"endpoints"}),
    "service": ({"node", "service", "expect"}, set()),
    "command": ({"on", "run", "expect"}, set()),
    "link": ({"node", "device", "expect"}, set()),
    "route": ({"node", "dst", "expect"}, {"dev", "via"}),
    "neigh": ({"node", "peer", "expect"}, {"dev"}),
    "fdb": ({"node", "peer", "expect"}, {"dev"}),
    "sysctl": ({"node", "key", "expect"}, set()),
    "iptables": ({"node", "expect"}, {"table", "chain", "rule", "policy"}),
    "etcd": ({"key", "expect"}, {"field", "equals", "api"}),
    "lease": ({"of", "expect"}, {"field", "equals"}),
    "log": ({"node", "service", "regex", "expect"}, set()),
}
CHECK_COMMON = {"id", "kind", "role", "show", "hint_ref", "title"}

_node_or_all = {"type": "string", "pattern": r"^(master|node[0-9]{1,3}|all)$"}
_node = {"type": "string", "pattern": r"^(master|node[0-9]{1,3})$"}
_target = {"type": "string", "pattern": r"^(master|node[0-9]{1,3})(/[a-zA-Z0-9][a-zA-Z0-9_.-]{0,31})?$"}
_present = {"enum": ["present", "absent"]}
_text = {"type": "string", "minLength": 1, "maxLength": 4000}

_STEP = {
    "type": "object",
    "properties": {
        "on": _node, "run": {"type": "string", "minLength": 1, "maxLength": 4000},
        "action": {"enum": sorted(ACTIONS)}, "service": {"enum": SERVICES},
        "verb": {"enum": ["down", "up", "del", "add"]},
        "config": {"type": ["object", "string"]}, "of": _node,
        "seconds": {"type": "number", "minimum": 0, "maximum": 30},
        "note": {"type": "string"}, "ignore_errors": {"type": "boolean"},
        "timeout": {"type": "number", "minimum": 1, "maximum": 120},
    },
    "additionalProperties": False,
}
_STEPS = {"type": "array", "items": _STEP}

_EXPECT_BY_KIND: dict[str, dict[str, Any]] = {
    "ping": {"enum": ["ok", "fail"]},
    "connectivity": {"enum": ["ok", "fail"]},
    "service": {"enum": ["active", "inactive"]},
    "command": {"type": "object", "minProperties": 1, "additionalProperties": False, "properties": {
        "exit": {"type": "integer", "minimum": 0, "maximum": 255}, "contains": {"type": "string"},
        "not_contains": {"type": "string"}, "regex": {"type": "string"}, "not_regex": {"type": "string"}}},
    "link": {"type": "object", "minProperties": 1, "additionalProperties": False, "properties": {
        "exists": {"type": "boolean"}, "mtu": {"type": "integer", "minimum": 68, "maximum": 65535},
        "state": {"enum": ["UP", "DOWN"]}, "address": {"type": "string"}}},
    "route": _present, "neigh": _present, "fdb": _present, "iptables": _present,
    "sysctl": {"type": ["string", "integer"]},
    "etcd": {"enum": ["exists", "absent"]},
    "lease": {"enum": ["exists", "absent"]},
    "log": _present,
}

_CHECK_PROPS: dict[str, Any] = {
    "id": {"type": "string", "pattern": r"^[a-z0-9][a-z0-9-]{0,47}$"},
    "kind": {"enum": sorted(KINDS)},
    "role": {"enum": ["outcome", "diagnostic"]},
    "title": {"type": "string"},
    "show": {"type": "string"},
    "hint_ref": {"type": "integer", "minimum": 1},
    "from": _target, "to": _target,
    "size": {"anyOf": [{"type": "integer", "minimum": 0, "maximum": 65507}, {"const": "mtu"}]},
    "df": {"type": "boolean"}, "count": {"type": "integer", "minimum": 1, "maximum": 5},
    "endpoints": {"type": "array", "items": _target, "minItems": 2},
    "node": _node_or_all, "on": _target, "of": _node_or_all,
    "service": {"enum": SERVICES},
    "run": {"type": "string", "minLength": 1, "maxLength": 4000},
    "device": {"type": "string", "pattern": r"^[A-Za-z0-9_.-]{1,15}$"},
    "dst": {"type": "string", "pattern": r"^(default|subnet-of:(master|node[0-9]{1,3})|network|"
                                         r"[0-9.]+(/[0-9]{1,2})?)$"},
    "via": {"type": "string"}, "dev": {"type": "string", "pattern": r"^[A-Za-z0-9_.-]{1,15}$"},
    "peer": _node,
    "key": {"type": "string"},
    "table": {"enum": ["filter", "nat", "mangle", "raw"]},
    "chain": {"type": "string", "pattern": r"^[A-Za-z0-9_-]{1,28}$"},
    "rule": {"type": "string", "minLength": 1},
    "policy": {"enum": ["ACCEPT", "DROP"]},
    "field": {"type": "string", "pattern": r"^[A-Za-z0-9_.]{1,100}$"},
    "equals": {},
    "api": {"enum": ["v2", "v3"]},
    "regex": {"type": "string", "minLength": 1},
    "expect": {},
}

_KIND_PROPS: dict[str, dict[str, Any]] = {  # a field whose form depends on the kind
    "sysctl": {"key": {"type": "string", "pattern": r"^(net|kernel)\.[a-z0-9_.]{1,100}$"}},
    "etcd": {"key": {"type": "string", "pattern": r"^(/[A-Za-z0-9._-]+){1,20}$"}},
}

_CHECK = {
    "type": "object",
    "required": ["id", "kind", "role", "expect"],
    "properties": _CHECK_PROPS,
    "additionalProperties": False,
    "allOf": [{"if": {"properties": {"kind": {"const": k}}, "required": ["kind"]},
               "then": {"required": sorted(req), "properties": {"expect": _EXPECT_BY_KIND[k], **_KIND_PROPS.get(k, {})},
                        "propertyNames": {"enum": sorted(req | opt | CHECK_COMMON)}}}
              for k, (req, opt) in KINDS.items()],
}

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "labkit scenario",
    "type": "object",
    "required": ["name", "title", "summary", "tags", "minutes", "lab", "fault", "checks", "hints", "solution",
                 "explanation", "references"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "pattern": NAME_RE},
        "title": {"type": "string", "minLength": 1, "maxLength": 120},
        "summary": _text,
        "tags": {"type": "object", "required": ["topic", "difficulty"], "additionalProperties": False,
                 "properties": {"topic": {"type": "string"},
                                "difficulty": {"enum": ["easy", "medium", "hard"]},
                                "flavour": {"enum": ["modern", "legacy"]}}},
        "minutes": {"type": "integer", "minimum": 1, "maximum": 240},
        "lab": {"type": "object"},
        "setup": _STEPS,
        "fault": _STEPS,
        "checks": {"type": "array", "items": _CHECK, "minItems": 1},
        "hints": {"type": "array", "items": _text, "minItems": 1, "maxItems": 5},
        "solution": {"type": "array", "items": _STEP, "minItems": 1},
        "explanation": _text,
        "references": {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}},
        "settle": {"type": "number", "minimum": 0, "maximum": 120},
    },
}

# What a scenario's shell lines may name as an absolute path: the node's own files only.
# A node's shell sees the host's filesystem outside /etc (an overlay) and /run/flannel, so a
# scenario file never names any other path; `labkit` and namespace tools are refused too.
ALLOWED_PATHS = ("/etc/sysconfig/flanneld", "/etc/hostname", "/run/flannel/", "/proc/sys/net/",
                 "/sys/class/net/", "/dev/null")
FORBIDDEN_WORDS = re.compile(r"\b(labkit|nsenter|unshare|chroot|ip\s+netns|ip\s+-n\b|mount|umount|"
                             r"reboot|shutdown|kill(all)?\b|pkill|sudo|python3?|perl)\b")
_PATH_RE = re.compile(r"(?<![\w.:/-])(/[A-Za-z0-9_./-]*)")
MAX_FILE = 64 * 1024


class _Loader(yaml.SafeLoader):
    """YAML 1.2 booleans: only true/false. (YAML 1.1 reads `on:`, `off`, `yes`, `no` as booleans,
    and `on:` is a step's most common key.)"""


_Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:bool"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                              list("tTfF"))


class ScenarioError(LabError):
    """A scenario file that cannot be used: one line per problem, each naming the field path."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__("\n".join(f"{source}: {p}" for p in problems))


@dataclasses.dataclass
class Scenario:
    name: str
    title: str
    summary: str
    tags: dict[str, str]
    minutes: int
    lab: dict[str, Any]
    setup: list[dict[str, Any]]
    fault: list[dict[str, Any]]
    checks: list[dict[str, Any]]
    hints: list[str]
    solution: list[dict[str, Any]]
    explanation: str
    references: list[str]
    settle: float = 30.0
    source: str = ""

    def spec(self, lab_name: str) -> LabSpec:
        """The LabSpec this scenario's lab is built from (validated), named lab_name."""
        return LabSpec(**{**self.lab, "name": lab_name}).validate()

    @property
    def outcome_checks(self) -> list[dict[str, Any]]:
        return [c for c in self.checks if c["role"] == "outcome"]

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("source")
        return d


def _where(path: Any) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(top)"


def _shown(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[:limit - 4] + "...'"


def _type_name(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "text", bool: "true/false", int: "a number",
            float: "a number", type(None): "nothing (null)"}.get(type(value), type(value).__name__)


def describe(err: jsonschema.ValidationError) -> list[str]:
    """A jsonschema error as lines 'path: expected X; found Y'."""
    where, v, vv, inst = _where(err.absolute_path), err.validator, err.validator_value, err.instance
    if v == "required":
        missing = [k for k in vv if isinstance(inst, dict) and k not in inst]
        return [f"{_where([*err.absolute_path, k])}: expected a value (required); found nothing" for k in missing]
    if v == "additionalProperties" and isinstance(inst, dict):
        extra = [k for k in inst if k not in err.schema.get("properties", {})]
        known = ", ".join(sorted(err.schema.get("properties", {})))
        return [f"{_where([*err.absolute_path, k])}: expected one of the known fields ({known}); "
                f"found unknown field {k!r}" for k in extra]
    if "propertyNames" in err.schema_path:  # a field another kind of check has
        allowed = vv if isinstance(vv, list) else vv.get("enum", [])
        return [f"{_where([*err.absolute_path, inst])}: expected only fields of this kind of check "
                f"({', '.join(allowed)}); found {inst!r}"]
    if v == "enum":
        return [f"{where}: expected one of {', '.join(map(repr, vv))}; found {_shown(inst)}"]
    if v == "const":
        return [f"{where}: expected {vv!r}; found {_shown(inst)}"]
    if v == "type":
        kinds = vv if isinstance(vv, list) else [vv]
        names: dict[str, str] = {"object": "a mapping", "array": "a list", "string": "text",
                                 "integer": "a whole number", "number": "a number", "boolean": "true/false"}
        return [f"{where}: expected {' or '.join(names.get(str(k), str(k)) for k in kinds)}; "
                f"found {_type_name(inst)} {_shown(inst)}"]
    if v == "pattern":
        return [f"{where}: expected text matching {vv}; found {_shown(inst)}"]
    if v in ("minimum", "maximum"):
        return [f"{where}: expected a number {'>=' if v == 'minimum' else '<='} {vv}; found {_shown(inst)}"]
    if v in ("minItems", "maxItems"):
        return [f"{where}: expected {'at least' if v == 'minItems' else 'at most'} {vv} item(s); "
                f"found {len(inst)}"]
    if v in ("minLength", "maxLength"):
        return [f"{where}: expected text of {'at least' if v == 'minLength' else 'at most'} {vv} "
                f"characters; found {len(inst)}"]
    if v == "minProperties":
        return [f"{where}: expected at least {vv} field(s); found none"]
    if v == "anyOf":
        return [f"{where}: expected a whole number or 'mtu'; found {_shown(inst)}"]
    return [f"{where}: expected {v} {_shown(vv)}; found {_shown(inst)}"]


def schema_problems(data: Any) -> list[str]:
    import jsonschema  # here, not at the top: it takes seconds to import (a bundle's checks do without it)
    validator = jsonschema.Draft202012Validator(SCHEMA)
    problems: list[str] = []
    for err in sorted(validator.iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path]):
        if err.validator in ("allOf", "if", "then"):
            continue
        for line in describe(err):
            if line not in problems:
                problems.append(line)
    return problems


def _path_problems(where: str, text: str, prefix: str) -> list[str]:
    out = []
    m = FORBIDDEN_WORDS.search(text)
    if m:
        out.append(f"{where}: expected a command for the node's shell; found {m.group(0)!r}, which a "
                   "scenario may not use (it could reach beyond the lab)")
    for p in _PATH_RE.findall(text):
        if p == "/" or not (p.startswith(ALLOWED_PATHS) or p == prefix or p.startswith(prefix + "/")):
            out.append(f"{where}: expected paths inside the node ({', '.join(ALLOWED_PATHS)}, or etcd keys "
                       f"under {prefix}); found {p!r}")
    return out


def semantic_problems(data: dict[str, Any]) -> list[str]:
    """What the schema cannot say: the lab is a valid LabSpec, names exist, paths stay inside."""
    problems: list[str] = []
    lab = data.get("lab", {})
    try:
        spec = LabSpec(**{**lab, "name": "scvalidate"}).validate()
    except TypeError as e:
        m = re.search(r"'(\w+)'", str(e))
        fields = ", ".join(sorted(f for f in LabSpec.__dataclass_fields__ if f != "name"))
        return [f"lab.{m.group(1) if m else '?'}: expected a LabSpec field ({fields}); found "
                f"{m.group(1) if m else e!s}"]
    except LabError as e:
        return [f"lab.{e.field or '?'}: expected a valid lab; found {e}"]
    if "name" in lab:
        problems.append("lab.name: expected no name (the lab's name is given when it starts); "
                        f"found {lab['name']!r}")
    nodes = set(spec.node_names)

    def node_ok(where: str, value: Any, allow_all: bool = False) -> None:
        if not isinstance(value, str) or (allow_all and value == "all"):
            return
        try:
            node, _ = check_target(value)
        except LabError as e:
            problems.append(f"{where}: expected a node (or NODE/CONTAINER); found {value!r} ({e})")
            return
        if node not in nodes:
            problems.append(f"{where}: expected a node of this lab ({', '.join(spec.node_names)}); found {node!r}")

    for section in ("setup", "fault", "solution"):
        for i, step in enumerate(data.get(section) or []):
            where = f"{section}[{i}]"
            if not isinstance(step, dict):
                continue
            has_run, action = "run" in step, step.get("action")
            if has_run == (action is not None):
                problems.append(f"{where}: expected exactly one of 'run' (a shell line) or 'action'; found "
                                f"{'both' if has_run else 'neither'}")
                continue
            if has_run:
                if "on" not in step:
                    problems.append(f"{where}.on: expected the node to type the line on; found nothing")
                extra = set(step) - {"on", "run"} - STEP_COMMON
                if extra:
                    problems.append(f"{where}: expected only on, run, {', '.join(sorted(STEP_COMMON))}; found "
                                    f"{', '.join(sorted(extra))}")
                problems += _path_problems(f"{where}.run", str(step["run"]), spec.prefix)
            elif action in ACTIONS:
                req, opt = ACTIONS[action]
                for f in sorted(req - set(step)):
                    problems.append(f"{where}.{f}: expected a value (action {action} needs it); found nothing")
                extra = set(step) - req - opt - {"action"} - STEP_COMMON
                if extra:
                    problems.append(f"{where}: expected only {', '.join(sorted(req | opt | {'action'}))} for "
                                    f"action {action}; found {', '.join(sorted(extra))}")
            for f in ("on", "of"):
                if f in step:
                    node_ok(f"{where}.{f}", step[f])
    hints = data.get("hints") or []
    seen: set[str] = set()
    for i, c in enumerate(data.get("checks") or []):
        if not isinstance(c, dict):
            continue
        where = f"checks[{i}]"
        if c.get("id") in seen:
            problems.append(f"{where}.id: expected a unique id; found {c.get('id')!r} twice")
        seen.add(str(c.get("id")))
        for f in ("from", "to", "on", "node", "of", "peer"):
            if f in c:
                node_ok(f"{where}.{f}", c[f], allow_all=True)
        for j, ep in enumerate(c.get("endpoints") or []):
            node_ok(f"{where}.endpoints[{j}]", ep)
        if c.get("kind") == "command" and isinstance(c.get("run"), str):
            problems += _path_problems(f"{where}.run", c["run"], spec.prefix)
        for f in ("regex", "rule"):
            val = c.get(f)
            if isinstance(val, str):
                try:
                    re.compile(val)
                except re.error as e:
                    problems.append(f"{where}.{f}: expected a regular expression; found {val!r} ({e})")
        if c.get("kind") == "iptables" and not (("rule" in c) ^ ("policy" in c)):
            problems.append(f"{where}: expected exactly one of 'rule' or 'policy'; found "
                            f"{'both' if 'rule' in c else 'neither'}")
        if c.get("kind") == "iptables" and "policy" in c and "chain" not in c:
            problems.append(f"{where}.chain: expected the chain whose policy is checked; found nothing")
        if "hint_ref" in c and isinstance(c["hint_ref"], int) and c["hint_ref"] > len(hints):
            problems.append(f"{where}.hint_ref: expected a hint tier 1..{len(hints)}; found {c['hint_ref']}")
    if not any(isinstance(c, dict) and c.get("role") == "outcome" for c in data.get("checks") or []):
        problems.append("checks: expected at least one check with role: outcome (it decides 'solved'); found none")
    return problems


def parse(text: str, source: str = "<scenario>") -> Scenario:
    """A scenario from YAML text, or ScenarioError with every problem found."""
    if len(text) > MAX_FILE:
        raise ScenarioError(source, [f"(file): expected at most {MAX_FILE} bytes; found {len(text)}"])
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "?"
        raise ScenarioError(source, [f"(file): expected YAML; found a syntax error at {at}: "
                                     f"{getattr(e, 'problem', e)}"]) from None
    if not isinstance(data, dict):
        raise ScenarioError(source, [f"(top): expected a mapping of fields; found {_type_name(data)}"])
    problems = schema_problems(data)
    if not problems:
        problems = semantic_problems(data)
    if problems:
        raise ScenarioError(source, problems)
    base = os.path.splitext(os.path.basename(source))[0]
    if source.endswith((".yaml", ".yml")) and base != data["name"]:
        raise ScenarioError(source, [f"name: expected the file's name ({base!r}); found {data['name']!r}"])
    return Scenario(name=data["name"], title=data["title"], summary=data["summary"].strip(), tags=data["tags"],
                    minutes=data["minutes"], lab=data["lab"], setup=data.get("setup") or [],
                    fault=data["fault"] or [], checks=data["checks"], hints=data["hints"],
                    solution=data["solution"], explanation=data["explanation"].strip(),
                    references=data["references"], settle=float(data.get("settle", 30)), source=source)


def scenario_dirs() -> list[Path]:
    """Where scenarios are found: $LABKIT_SCENARIOS (':'-separated), then the repository's scenarios/."""
    dirs = [Path(p) for p in os.environ.get("LABKIT_SCENARIOS", "").split(os.pathsep) if p]
    dirs.append(Path(__file__).resolve().parents[2] / "scenarios")
    return [d for d in dirs if d.is_dir()]


def available() -> dict[str, Path]:
    """{name: file} of every scenario file found (the first directory wins)."""
    out: dict[str, Path] = {}
    for d in scenario_dirs():
        for p in sorted(d.glob("*.yaml")):
            out.setdefault(p.stem, p)
    return out


def load(name_or_path: str) -> Scenario:
    """A scenario by name (scenarios/NAME.yaml) or by the path of a .yaml file."""
    if name_or_path.endswith((".yaml", ".yml")):
        path = Path(name_or_path)
    else:
        if not re.match(NAME_RE, name_or_path):
            raise LabError(f"invalid scenario name {name_or_path!r}: give a name of 2-48 lower-case letters, "
                           f"digits and '-' (labkit scenario list), or the path of a scenario file ending in .yaml")
        found = available()
        if name_or_path not in found:
            raise LabError(f"no scenario called {name_or_path!r} (labkit scenario list shows them: "
                           f"{', '.join(sorted(found)) or 'none found'})")
        path = found[name_or_path]
    try:
        text = path.read_text()
    except OSError as e:
        raise LabError(f"cannot read scenario file {path}: {e.strerror or e}") from None
    return parse(text, str(path))


def load_all() -> tuple[list[Scenario], list[ScenarioError]]:
    ok: list[Scenario] = []
    bad: list[ScenarioError] = []
    for _, path in sorted(available().items()):
        try:
            ok.append(parse(path.read_text(), str(path)))
        except ScenarioError as e:
            bad.append(e)
    return ok, bad
