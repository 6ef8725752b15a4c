"""The bundle file: what a lab's state looks like on paper, and the checks a bundle must pass.

A bundle is one JSON document (README: Bug reports and state bundles)::

    {"format": "labkit-bundle", "version": 1, "created": "2026-11-30T07:30:00Z", "lab": "lab",
     "versions": {"labkit": ..., "flannel": ..., "etcd": ..., "kernel": ..., "docker": ...},
     "spec": {every LabSpec field, as the lab is now},
     "initial_spec": {every LabSpec field, as `up` built it},
     "initial_subnets": {"master": "10.108.41.1/24", ...}   (each node's FLANNEL_SUBNET after `up`),
     "etcd": {"api": "v3", "v3": [{"key", "value", "ttl", "granted_ttl"}], "v2": [...]},
     "nodes": {"master": {"sysconfig": "...", "flanneld_flags": [...], "ip_link": "...", "ip_addr": "...",
                          "ip_route": "...", "ip_neigh": "...", "bridge_fdb": "...", "iptables_save": "...",
                          "sysctl": "...", "subnet_env": "...", "docker_opts": "...",
                          "units": {"flanneld": "active", ...}, "logs": {"flanneld": "..."},
                          "containers": [{"name", "ip", "running"}]}, ...},
     "transcript": [{"t", "via", "step": {...}} | {"t", "via", "interactive": "node1"}
                    | {"t", "via", "reconfigure": {LabSpec fields a reconfigure changed}}]}

The spec is stored whole (``dataclasses.asdict``), so a LabSpec field added later travels
without this module knowing it; a bundle naming a field *this* labkit lacks is refused
(it was made by a newer labkit, and replaying it without that field would build another lab).

:func:`parse` is the gate of `replay`, `diff` and `scenario from-bundle`: size, JSON, shape,
the spec through LabSpec.validate, etcd keys under the lab's prefix, node names, and every
transcript step through the scenario files' own schema and safety lint (a step may name only
the node's files and may not reach beyond the lab: labkit/scenario/model.py). Pure logic.
"""
from __future__ import annotations

import dataclasses
import json
import re
import shlex
from typing import Any

from ..errors import LabError
from ..spec import LabSpec, check_target
from ..transcript import MAX_ENTRIES

# What a running lab can change (labkit/lab.py RECONFIGURABLE; repeated here so that this module
# stays free of Lab and its imports; tests/unit/test_bundle.py checks they agree).
RECONFIGURABLE = ("network", "subnet_len", "backend", "vni", "port", "direct_routing", "extra_config", "nodes")

FORMAT = "labkit-bundle"
VERSION = 1
MAX_BUNDLE = 32 * 1024 * 1024    # bytes: a bundle is text a person attaches to a bug report (3 nodes: ~50 kB)
MAX_TEXT = 512 * 1024            # one command's output in a bundle
MAX_VALUE = 64 * 1024            # one etcd value
MAX_KEYS = 20000                 # etcd keys (a 1000-node lab has 1000 leases)
NODE_TEXTS = ("sysconfig", "ip_link", "ip_addr", "ip_route", "ip_neigh", "bridge_fdb", "iptables_save",
              "sysctl", "subnet_env", "docker_opts")
TOP_KEYS = {"format", "version", "created", "lab", "versions", "spec", "initial_spec", "initial_subnets", "etcd",
            "nodes", "transcript", "notes"}
_TARGET_RE = re.compile(r"^(master|node[0-9]{1,3})(/[a-zA-Z0-9][a-zA-Z0-9_.-]{0,31})?$")
_ETCD_KEY_RE = re.compile(r"^(/[A-Za-z0-9._-]+){1,20}$")


class BundleError(LabError):
    """A bundle that cannot be used: every problem, one line each, ``FILE: where: what``."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(f"{source}: {p}" for p in problems[:20])
                         + (f"\n{source}: ... and {len(problems) - 20} more" if len(problems) > 20 else ""))


@dataclasses.dataclass
class Bundle:
    """A bundle that passed :func:`parse` (the document itself is ``data``)."""
    data: dict[str, Any]
    spec: LabSpec           # validated, named as in the bundle
    initial_spec: LabSpec

    @property
    def lab(self) -> str:
        return str(self.data["lab"])

    @property
    def nodes(self) -> dict[str, dict[str, Any]]:
        return dict(self.data.get("nodes") or {})

    @property
    def transcript(self) -> list[dict[str, Any]]:
        return list(self.data.get("transcript") or [])

    def steps(self) -> list[dict[str, Any]]:
        """The transcript's replayable steps, in order (interactive sessions left out)."""
        return [e["step"] for e in self.transcript if isinstance(e.get("step"), dict)]

    def interactive(self) -> list[str]:
        """The targets of interactive sessions, in order (listed, never replayed)."""
        return [str(e["interactive"]) for e in self.transcript if "interactive" in e]

    def leases(self) -> list[dict[str, Any]]:
        """The lease keys of the flavour's etcd API: [{key, value, ttl, granted_ttl}]."""
        api = self.data["etcd"].get("api", "v3")
        return [k for k in self.data["etcd"].get(api) or [] if "/subnets/" in k["key"]]


def spec_from(data: Any, where: str, name: str | None = None) -> LabSpec:
    """A LabSpec from a bundle's dict: every field known to this labkit, then validated."""
    if not isinstance(data, dict):
        raise LabError(f"{where}: expected a mapping of LabSpec fields; found {type(data).__name__}")
    known = {f.name for f in dataclasses.fields(LabSpec)}
    unknown = sorted(k for k in data if k not in known)
    if unknown:
        raise LabError(f"{where}: fields this labkit does not know: {', '.join(map(str, unknown))[:200]} "
                       "(made by a newer labkit? replaying it without them would build another lab)")
    fields = dict(data)
    if name is not None:
        fields["name"] = name
    try:
        return LabSpec(**fields).validate()
    except LabError as e:
        raise LabError(f"{where}.{e.field or '?'}: {e}") from None


def as_scenario_step(step: dict[str, Any]) -> dict[str, Any]:
    """A transcript step in the scenario files' vocabulary: ``argv`` becomes a shell line
    (``shlex.join``, so bash reads back the same words), a container target a ``docker exec``
    on its node. Used to lint a bundle's steps and to seed a scenario file."""
    out = dict(step)
    target = str(out.get("on", ""))
    node, _, container = target.partition("/")
    if "argv" in out:
        argv = out.pop("argv")
        words = [str(w) for w in argv] if isinstance(argv, list) else [str(argv)]
        line = shlex.join(["docker", "exec", container, *words] if container else words)
        if "input" in out:
            line = f"printf %s {shlex.quote(str(out.pop('input')))} | {line}"
        out["run"] = line
    elif "run" in out and container:
        out["run"] = shlex.join(["docker", "exec", container, "sh", "-c", str(out["run"])])
    if "on" in out:
        out["on"] = node
    return out


def _field_problems(step: dict[str, Any]) -> list[tuple[str, str]]:
    """A step's fields against the scenario schema's step properties (``_STEP``), read here
    without jsonschema (which takes seconds to import): enum, type, pattern, lengths, bounds."""
    from ..scenario.model import _STEP
    props: dict[str, Any] = dict(_STEP["properties"])  # type: ignore[call-overload]
    types: dict[str, tuple[type, ...]] = {"string": (str,), "object": (dict,), "number": (int, float),
                                          "boolean": (bool,)}
    out = []
    for field, value in step.items():
        rule = props.get(field)
        if rule is None:
            out.append((str(field)[:40], f"expected one of the known fields ({', '.join(sorted(props))})"))
            continue
        if "enum" in rule and value not in rule["enum"]:
            out.append((field, f"expected one of {', '.join(map(repr, rule['enum']))}; found {value!r:.40}"))
            continue
        kinds = rule.get("type", [])
        kinds = [kinds] if isinstance(kinds, str) else kinds
        if kinds and (not isinstance(value, tuple(t for k in kinds for t in types[k]))
                      or (isinstance(value, bool) and "boolean" not in kinds)):
            out.append((field, f"expected {' or '.join(kinds)}; found {type(value).__name__}"))
            continue
        if isinstance(value, str) and (not rule.get("minLength", 0) <= len(value) <= rule.get("maxLength", 10**6)
                                       or ("pattern" in rule and not re.match(rule["pattern"], value))):
            out.append((field, f"expected text matching the scenario schema; found {value!r:.60}"))
        if isinstance(value, (int, float)) and not isinstance(value, bool) \
                and not rule.get("minimum", -1e18) <= value <= rule.get("maximum", 1e18):
            out.append((field, f"expected a number between {rule.get('minimum')} and {rule.get('maximum')}; "
                               f"found {value!r}"))
    return out


# On top of the scenario lint (absolute paths inside the node only, no namespace tools): what
# reaches the host's files without naming an absolute path. A node's shell runs in the host's
# filesystem (only /etc and /run/flannel are the node's own), and a bundle comes from someone else.
ESCAPES = re.compile(r"(?:^|[\s/'\"=:;|&(])\.\.(?:/|$|[\s'\";|&)])|~|\$\{|\$(?:HOME|PWD|OLDPWD|USER)\b|"
                     r"(?:^|(?<=[\s;&|(`'\"/=]))(?:cd|pushd|popd|eval|source|exec|xargs|base64|xxd)"
                     r"(?=$|[\s;&|)`'\"])|(?:^|[;&|(]\s*)\.\s")
# (a word is a shell word: 'cd' inside a MAC such as 0a:cd:12:... or a name such as cd-3 is not one)


def escape_problem(text: str) -> str | None:
    """Why a command line could reach files outside the node without an absolute path (None: it cannot
    by these means): a '..' path, '~', $HOME and friends, ${...}, cd, eval, source, exec, ..."""
    m = ESCAPES.search(text)
    return None if m is None else m.group(0).strip(" \t\n/'\"=:;|&()")


def _step_problems(steps: list[Any], spec: LabSpec) -> list[str]:
    """Every transcript step through the scenario model's schema and safety lint."""
    from ..scenario import model as sm
    problems: list[str] = []
    converted: list[Any] = []
    index: list[int] = []
    for i, step in enumerate(steps):
        where = f"transcript[{i}].step"
        if not isinstance(step, dict):
            problems.append(f"{where}: expected a mapping; found {type(step).__name__}")
            continue
        if "argv" in step:
            extra = set(step) - {"on", "argv", "input"}
            argv = step.get("argv")
            if extra:
                problems.append(f"{where}: expected only on, argv, input; found {', '.join(sorted(map(str, extra)))}")
            if not isinstance(argv, list) or not argv or len(argv) > 200 \
                    or not all(isinstance(w, str) and len(w) <= 4000 and "\0" not in w for w in argv):
                problems.append(f"{where}.argv: expected a list of 1-200 words (text, no NUL); found {argv!r:.60}")
                continue
            if "input" in step and (not isinstance(step["input"], str) or len(step["input"]) > 4000):
                problems.append(f"{where}.input: expected text of at most 4000 characters")
                continue
        on = step.get("on")
        if on is not None:
            if not isinstance(on, str) or not _TARGET_RE.match(on):
                problems.append(f"{where}.on: expected a node (master, node1, ...) or NODE/CONTAINER; found {on!r:.60}")
                continue
            try:
                check_target(on)
            except LabError as e:
                problems.append(f"{where}.on: {e}")
                continue
        scenario_step = as_scenario_step(step)
        # the line as it was typed: a container's command is wrapped in our own `docker exec`
        # (as_scenario_step), whose `exec` is not the shell builtin the lint is about
        typed = as_scenario_step({**step, "on": str(on).partition("/")[0]} if on is not None else step)
        why = escape_problem(str(typed.get("run", "")))
        if why:
            problems.append(f"{where}: expected a command that stays inside the node; found {why!r}, which a "
                            "bundle may not use (a node's shell sees the host's files)")
            continue
        converted.append(scenario_step)
        index.append(i)
    if not converted:
        return problems
    found = [f"fault[{i}].{f}: {why}" for i, step in enumerate(converted) for f, why in _field_problems(step)]
    if not found:
        lab = {k: v for k, v in dataclasses.asdict(spec).items() if k != "name"}
        found = sm.semantic_problems({"lab": lab, "fault": converted,
                                      "checks": [{"id": "c", "kind": "connectivity", "role": "outcome"}]})
    for p in found:
        m = re.match(r"fault\[(\d+)\](.*)", p)
        problems.append(f"transcript[{index[int(m.group(1))]}].step{m.group(2)}" if m else p)
    return problems


def _text_problems(where: str, value: Any, limit: int = MAX_TEXT) -> list[str]:
    if value is None or (isinstance(value, str) and len(value) <= limit):
        return []
    return [f"{where}: expected text of at most {limit} characters"]


def validate(data: Any, source: str = "<bundle>") -> Bundle:
    """A bundle document -> Bundle, or BundleError with every problem found."""
    if not isinstance(data, dict):
        raise BundleError(source, [f"(top): expected a JSON object; found {type(data).__name__}"])
    if data.get("format") != FORMAT:
        raise BundleError(source, [f"format: expected {FORMAT!r} (a file written by labkit export); found "
                                   f"{data.get('format')!r:.60}"])
    if data.get("version") != VERSION:
        raise BundleError(source, [f"version: expected {VERSION}; found {data.get('version')!r:.30} "
                                   "(written by another labkit)"])
    problems = [f"{k}: expected one of the known fields ({', '.join(sorted(TOP_KEYS))}); found unknown field"
                for k in map(str, data) if k not in TOP_KEYS][:5]
    lab = data.get("lab")
    if not isinstance(lab, str) or not re.match(r"^[a-z][a-z0-9]{0,11}$", lab):
        problems.append(f"lab: expected a lab name; found {lab!r:.60}")
    try:
        spec = spec_from(data.get("spec"), "spec", "bundle")
        initial = spec_from(data.get("initial_spec", data.get("spec")), "initial_spec", "bundle")
    except LabError as e:
        raise BundleError(source, problems + [str(e)]) from None
    if initial.prefix != spec.prefix or initial.flavour != spec.flavour:
        problems.append("initial_spec: expected the same prefix and flavour as spec (a rebuild changes them)")
    subnets = data.get("initial_subnets", {})
    if not isinstance(subnets, dict):
        problems.append("initial_subnets: expected a mapping node -> FLANNEL_SUBNET")
    else:
        for node, sn in subnets.items():
            if node not in initial.node_names:
                problems.append(f"initial_subnets.{str(node)[:20]}: expected a node of the lab")
            elif sn is not None and not (isinstance(sn, str) and re.match(r"^\d{1,3}(\.\d{1,3}){3}/\d{1,2}$", sn)):
                problems.append(f"initial_subnets.{node}: expected a subnet like 10.108.41.1/24; found {sn!r:.40}")
    versions = data.get("versions", {})
    if not isinstance(versions, dict) or not all(isinstance(v, str) and len(v) < 300 for v in versions.values()):
        problems.append("versions: expected a mapping of short texts")
    etcd = data.get("etcd")
    if not isinstance(etcd, dict) or etcd.get("api") not in ("v2", "v3"):
        problems.append("etcd: expected {api: v2|v3, v3: [...], v2: [...]}")
    else:
        for api in ("v2", "v3"):
            keys = etcd.get(api) or []
            if not isinstance(keys, list) or len(keys) > MAX_KEYS:
                problems.append(f"etcd.{api}: expected a list of at most {MAX_KEYS} keys")
                continue
            for i, k in enumerate(keys):
                where = f"etcd.{api}[{i}]"
                if not isinstance(k, dict) or not isinstance(k.get("key"), str) or not isinstance(k.get("value"), str):
                    problems.append(f"{where}: expected {{key, value, ttl}}")
                    continue
                if not _ETCD_KEY_RE.match(k["key"]) or not (k["key"] + "/").startswith(spec.prefix + "/"):
                    problems.append(f"{where}.key: expected a key under {spec.prefix}; found {k['key']!r:.80}")
                if len(k["value"]) > MAX_VALUE:
                    problems.append(f"{where}.value: expected at most {MAX_VALUE} characters")
                for f in ("ttl", "granted_ttl"):
                    v = k.get(f)
                    if v is not None and (not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= 10**9):
                        problems.append(f"{where}.{f}: expected seconds (a whole number) or null; found {v!r:.30}")
    nodes = data.get("nodes")
    if not isinstance(nodes, dict):
        problems.append("nodes: expected a mapping node -> what was collected there")
    else:
        for node, info in nodes.items():
            if node not in spec.node_names:
                problems.append(f"nodes.{str(node)[:20]}: expected a node of the lab ({', '.join(spec.node_names[:4])}"
                                f"{', ...' if spec.nodes > 4 else ''})")
                continue
            if not isinstance(info, dict):
                problems.append(f"nodes.{node}: expected a mapping")
                continue
            for f in NODE_TEXTS:
                problems += _text_problems(f"nodes.{node}.{f}", info.get(f))
            for f in ("units", "logs"):
                v = info.get(f, {})
                if not isinstance(v, dict) or not all(isinstance(x, str) and len(x) <= MAX_TEXT for x in v.values()):
                    problems.append(f"nodes.{node}.{f}: expected a mapping unit -> text")
            flags = info.get("flanneld_flags", [])
            if not isinstance(flags, list) or not all(isinstance(x, str) for x in flags):
                problems.append(f"nodes.{node}.flanneld_flags: expected a list of words")
            cs = info.get("containers", [])
            if not isinstance(cs, list) or not all(isinstance(c, dict) for c in cs):
                problems.append(f"nodes.{node}.containers: expected a list of {{name, ip, running}}")
    entries = data.get("transcript", [])
    if not isinstance(entries, list) or len(entries) > MAX_ENTRIES:
        problems.append(f"transcript: expected a list of at most {MAX_ENTRIES} entries")
    else:
        steps = []
        current = biggest = initial   # steps may name nodes a reconfigure added
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict) or not any(k in entry for k in ("step", "interactive", "reconfigure",
                                                                           "too_long", "full")):
                problems.append(f"transcript[{i}]: expected {{t, via, step}} or {{t, via, interactive}}")
                continue
            if "reconfigure" in entry:
                change = entry["reconfigure"]
                if not isinstance(change, dict) or not set(change) <= set(RECONFIGURABLE) | {"revoke"} \
                        or not isinstance(change.get("revoke", True), bool):
                    problems.append(f"transcript[{i}].reconfigure: expected fields of {', '.join(RECONFIGURABLE)}")
                else:
                    try:
                        current = spec_from({**dataclasses.asdict(current),
                                             **{k: v for k, v in change.items() if k != "revoke"}},
                                            f"transcript[{i}].reconfigure", "bundle")
                        biggest = current if current.nodes > biggest.nodes else biggest
                    except LabError as e:
                        problems.append(str(e))
            shell = entry.get("interactive")
            if "interactive" in entry and (not isinstance(shell, str) or not _TARGET_RE.match(shell)):
                problems.append(f"transcript[{i}].interactive: expected a node or NODE/CONTAINER")
            steps.append(entry.get("step") if "step" in entry else {"action": "wait", "seconds": 0})
        problems += _step_problems(steps, biggest)
    if problems:
        raise BundleError(source, problems)
    return Bundle(data=data, spec=spec, initial_spec=initial)


def parse(text: str | bytes, source: str = "<bundle>") -> Bundle:
    """A bundle from its file's text: size, JSON, then :func:`validate`."""
    if len(text) > MAX_BUNDLE:
        raise BundleError(source, [f"(file): expected at most {MAX_BUNDLE} bytes; found {len(text)}"])
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError) as e:
        raise BundleError(source, [f"(file): expected JSON written by labkit export; found {str(e)[:100]}"]) from None
    return validate(data, source)


def load(path: str) -> Bundle:
    """A bundle from a file (read at most MAX_BUNDLE + 1 bytes)."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_BUNDLE + 1)
    except OSError as e:
        raise LabError(f"cannot read bundle {path}: {e.strerror or e}") from None
    return parse(raw, path)


def dumps(data: dict[str, Any]) -> str:
    """The bundle's text: sorted keys, indented, so two bundles compare line by line."""
    return json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
