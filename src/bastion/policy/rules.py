"""Rules files: YAML read with line numbers, checked against the rules format, normalised for the engine.

:func:`parse_policy` turns the text of a rules file into a :class:`PolicySpec` (plain, frozen data the engine
compiles) or raises :class:`~bastion.errors.InvalidPolicy` whose ``details["problems"]`` lists every problem found,
each with the YAML line, the path of the offending field (``rules[2].when.any_match.labels.category``) and the rule's
name. Nothing is guessed: unknown keys, outcomes and operators are errors, so a typo never silently weakens a
policy. The format itself is documented in ``docs/policy.md``.

YAML 1.1's implicit booleans are narrowed to ``true``/``false``: ``NO`` (Norway), ``ON`` and ``yes`` stay strings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yaml

from bastion.errors import InvalidLabel, InvalidPolicy
from bastion.policy import OUTCOMES

MAX_SOURCE_CHARS = 256 * 1024
MAX_RULES = 500
MAX_DEPTH = 24
MAX_NODES = 50_000
FORMAT_VERSION = 1

EU_MEMBERS = (
    "AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU", "IE", "IT", "LT", "LU", "LV",
    "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK",
)  # fmt: skip
SEVERITY_WORDS = {"low": 1.0, "medium": 2.0, "high": 3.0, "critical": 4.0}
SOURCES = ("upload", "text", "url")
CONTENT_TYPES = ("image", "video", "pdf", "text", "url", "other")
KNOWN_SIGNAL_TYPES = ("md5", "sha256", "pdq", "vpdq", "tmk", "text", "text_minhash", "url", "url_md5")
EXACT_SIGNAL_TYPES = frozenset({"md5", "sha256", "text", "url", "url_md5"})
JURISDICTION_ALIASES = {"UK": "GB", "EL": "GR"}  # common non-ISO codes (EU usage), as intake reads them
LIST_ALIASES = {"un": "un_1267", "uk": "uk_proscribed", "eu": "eu_terrorist_list"}
DEFAULT_QUEUES = {"review": "review", "escalate": "escalation"}
DEFAULT_PRIORITIES = {"review": 5, "escalate": 1}
NUMBER_OPS = ("gte", "gt", "lte", "lt", "eq")
LABEL_OPS = ("in", "not_in", "eq", "ne", "gte", "gt", "lte", "lt", "exists")

_RULE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$")
_QUEUE_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
_IDENT_RE = re.compile(r"^[a-z0-9][a-z0-9_.:-]{0,99}$")
_LANG_RE = re.compile(r"^[a-z]{2,3}(-[a-z0-9]{1,8})*$")
_JURISDICTION_RE = re.compile(r"^[A-Z]{2}$")
_LABEL_KEY_RE = re.compile(r"^[a-z0-9][a-z0-9_.:-]*$")


# -- the normalised form ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelTest:
    """One label key and the operators its value must pass (all of them). Values are already normalised."""

    key: str
    ops: tuple[tuple[str, Any], ...]


@dataclass(frozen=True)
class MatchFilter:
    """What one bank match must satisfy; ``None`` means "any"."""

    banks: frozenset[str] | None = None
    signal_types: frozenset[str] | None = None
    exact: bool | None = None
    max_distance: float | None = None
    sources: frozenset[str] | None = None
    labels: tuple[LabelTest, ...] = ()


@dataclass(frozen=True)
class Cond:
    """A condition node: ``kind`` plus its arguments (see the ``_cond_*`` checkers for each kind's ``args``)."""

    kind: str
    args: tuple[Any, ...] = ()


@dataclass(frozen=True)
class Action:
    """What a rule (or the default) does."""

    outcome: str
    reason: str = ""
    restrict_in: tuple[str, ...] = ()
    restrict_submission: bool = False  # ``in: submission``: the submission's own jurisdictions
    queue: str | None = None
    priority: int | None = None


@dataclass(frozen=True)
class RuleSpec:
    name: str
    index: int
    line: int | None
    when: Cond | None  # None: always
    action: Action
    shadow: bool = False
    description: str = ""


@dataclass(frozen=True)
class PolicySpec:
    rules: tuple[RuleSpec, ...]
    default: Action
    description: str = ""

    @property
    def live_rules(self) -> tuple[RuleSpec, ...]:
        return tuple(r for r in self.rules if not r.shadow)

    @property
    def shadow_rules(self) -> tuple[RuleSpec, ...]:
        return tuple(r for r in self.rules if r.shadow)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a rules file."""

    path: str
    message: str
    line: int | None = None
    rule: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"line": self.line, "path": self.path, "rule": self.rule, "message": self.message}

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        rule = f" (rule '{self.rule}')" if self.rule else ""
        return f"{where}{self.path or '<file>'}{rule}: {self.message}"


# -- YAML with line numbers ------------------------------------------------------------------------------------------


class _Map(dict):  # type: ignore[type-arg]
    """A mapping that remembers the line of each key and any key given twice."""

    line: int | None = None
    key_lines: dict[Any, int]
    duplicates: list[tuple[Any, int]]


class _Seq(list):  # type: ignore[type-arg]
    line: int | None = None
    item_lines: list[int]


_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_BaseLoader):  # type: ignore[misc, valid-type]
    pass


_BOOL = "tag:yaml.org,2002:bool"
_Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != _BOOL] for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


def _construct_map(loader: Any, node: yaml.MappingNode) -> _Map:
    own = sum(1 for k, _ in node.value if k.tag != "tag:yaml.org,2002:merge")
    loader.flatten_mapping(node)
    first_own = len(node.value) - own
    out = _Map()
    out.line = node.start_mark.line + 1
    out.key_lines, out.duplicates = {}, []
    for i, (key_node, value_node) in enumerate(node.value):
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            key = str(key)
        if key in out.key_lines and i >= first_own:
            out.duplicates.append((key, key_node.start_mark.line + 1))
        out[key] = loader.construct_object(value_node, deep=True)
        out.key_lines[key] = key_node.start_mark.line + 1
    return out


def _construct_seq(loader: Any, node: yaml.SequenceNode) -> _Seq:
    out = _Seq(loader.construct_object(child, deep=True) for child in node.value)
    out.line = node.start_mark.line + 1
    out.item_lines = [child.start_mark.line + 1 for child in node.value]
    return out


_Loader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_Loader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)


def load_yaml(source: str) -> Any:
    """The document in ``source`` with line-numbered mappings and lists; raises InvalidPolicy on a YAML error."""
    try:
        loader = _Loader(source)
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark is not None else None
        what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        context = getattr(exc, "context", None)
        message = f"not valid YAML: {what}" + (f" ({context})" if context else "")
        raise _invalid([Problem("", message, line)]) from None
    except RecursionError:
        raise _invalid([Problem("", "the YAML nests too deeply")]) from None


def _invalid(problems: list[Problem]) -> InvalidPolicy:
    first = problems[0]
    more = f" (and {len(problems) - 1} more problem{'s' if len(problems) > 2 else ''})" if len(problems) > 1 else ""
    return InvalidPolicy(
        f"invalid policy: {first}{more}", problems=[p.to_dict() for p in problems]
    )


# -- checking --------------------------------------------------------------------------------------------------------


class _TooComplex(Exception):
    pass


class _Checker:
    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self.rule: str | None = None
        self.nodes = 0

    # helpers

    def err(self, path: str, line: int | None, message: str) -> None:
        self.problems.append(Problem(path, message, line, self.rule))

    def tick(self) -> None:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise _TooComplex

    @staticmethod
    def line_of(container: Any, key: Any, fallback: int | None) -> int | None:
        if isinstance(container, _Map):
            return container.key_lines.get(key, container.line)
        if isinstance(container, _Seq) and isinstance(key, int) and key < len(container.item_lines):
            return container.item_lines[key]
        return fallback

    def mapping(self, value: Any, path: str, line: int | None, allowed: tuple[str, ...], what: str) -> bool:
        """True when ``value`` is a mapping whose keys are all in ``allowed`` (problems reported otherwise)."""
        if not isinstance(value, dict):
            self.err(path, line, f"{what} must be a mapping, got {_kind(value)}")
            return False
        for key, dup_line in getattr(value, "duplicates", ()):
            self.err(_join(path, str(key)), dup_line, f"key '{key}' is given twice")
        ok = True
        for key in value:
            if key not in allowed:
                self.err(
                    _join(path, str(key)),
                    self.line_of(value, key, line),
                    f"unknown key '{key}' in {what}; allowed: {', '.join(allowed)}",
                )
                ok = False
        return ok

    def strings(
        self, value: Any, path: str, line: int | None, what: str, pattern: re.Pattern[str] | None = None,
        fold: str = "",
    ) -> list[str] | None:
        """One string or a non-empty list of them, each folded (``lower``/``upper``) and checked against ``pattern``."""
        items = list(value) if isinstance(value, list) else [value]
        if isinstance(value, list) and not value:
            self.err(path, line, f"{what}: the list is empty (it could never match)")
            return None
        out: list[str] = []
        for i, item in enumerate(items):
            item_line = self.line_of(value, i, line)
            if isinstance(item, bool) or not isinstance(item, str | int | float) or (
                isinstance(item, str) and not item.strip()
            ):
                self.err(path, item_line, f"{what}: expected a name or a list of names, got {_kind(item)}")
                return None
            text = str(item).strip()
            text = text.lower() if fold == "lower" else text.upper() if fold == "upper" else text
            if pattern is not None and not pattern.match(text):
                self.err(path, item_line, f"{what}: {item!r} is not a valid value")
                return None
            out.append(text)
        return out

    def number(self, value: Any, path: str, line: int | None, what: str, lo: float | None = None,
               hi: float | None = None, words: bool = False) -> float | None:
        if words and isinstance(value, str) and value.strip().lower() in SEVERITY_WORDS:
            return SEVERITY_WORDS[value.strip().lower()]
        if isinstance(value, bool) or not isinstance(value, int | float):
            extra = " or one of low, medium, high, critical" if words else ""
            self.err(path, line, f"{what} must be a number{extra}, got {_kind(value)}")
            return None
        if value != value:  # NaN
            self.err(path, line, f"{what} must be a number, got .nan")
            return None
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            self.err(path, line, f"{what} must be between {lo:g} and {hi:g}, got {value}")
            return None
        return float(value)

    # the file

    def policy(self, doc: Any) -> PolicySpec | None:
        if doc is None:
            self.err("", 1, "the policy is empty: it needs at least 'rules:' (a list, possibly empty)")
            return None
        top = ("version", "description", "default", "rules")
        if not self.mapping(doc, "", 1, top, "the policy") and not isinstance(doc, dict):
            return None
        version = doc.get("version", FORMAT_VERSION)
        if version != FORMAT_VERSION or isinstance(version, bool):
            self.err("version", self.line_of(doc, "version", 1),
                     f"unsupported rules format version {version!r}; this Bastion reads version {FORMAT_VERSION}")
        description = self.text(doc.get("description", ""), "description", self.line_of(doc, "description", 1))
        default = Action("allow", "No rule matched.")
        if "default" in doc:
            default = self.default(doc["default"], self.line_of(doc, "default", 1)) or default
        if "rules" not in doc:
            self.err("rules", 1, "missing 'rules': a list of rules (it may be empty)")
            return None
        rules_value = doc["rules"]
        rules_line = self.line_of(doc, "rules", 1)
        if rules_value is None:
            rules_value = []
        if not isinstance(rules_value, list):
            self.err("rules", rules_line, f"'rules' must be a list of rules, got {_kind(rules_value)}")
            return None
        if len(rules_value) > MAX_RULES:
            self.err("rules", rules_line, f"{len(rules_value)} rules: at most {MAX_RULES} are allowed")
            return None
        rules: list[RuleSpec] = []
        seen: dict[str, int] = {}
        for i, raw in enumerate(rules_value):
            line = self.line_of(rules_value, i, rules_line)
            spec = self.rule_(raw, i, line)
            name = raw.get("name") if isinstance(raw, dict) else None
            if isinstance(name, str):
                if name in seen:
                    self.rule = name
                    self.err(f"rules[{i}].name", self.line_of(raw, "name", line),
                             f"duplicate rule name '{name}' (first used by rules[{seen[name]}])")
                    self.rule = None
                    continue
                seen[name] = i
            if spec is not None:
                rules.append(spec)
        if self.problems:
            return None
        return PolicySpec(tuple(rules), default, description or "")

    def text(self, value: Any, path: str, line: int | None, limit: int = 2000) -> str | None:
        if value is None:
            return ""
        if not isinstance(value, str):
            self.err(path, line, f"must be text, got {_kind(value)}")
            return None
        if len(value) > limit:
            self.err(path, line, f"is {len(value)} characters; at most {limit}")
            return None
        return value.strip()

    def default(self, value: Any, line: int | None) -> Action | None:
        if isinstance(value, str):
            value = {"outcome": value}
        if not self.mapping(value, "default", line, ("outcome", "reason", "in", "queue", "priority"), "'default'"):
            return None
        return self.action(value, "default", line, "No rule matched.")

    def rule_(self, raw: Any, i: int, line: int | None) -> RuleSpec | None:
        path = f"rules[{i}]"
        self.rule = None
        name = raw.get("name") if isinstance(raw, dict) else None
        if isinstance(name, str) and _RULE_NAME_RE.match(name):
            self.rule = name
        allowed = ("name", "description", "when", "outcome", "reason", "in", "queue", "priority", "shadow")
        if not self.mapping(raw, path, line, allowed, "a rule") and not isinstance(raw, dict):
            return None
        before = len(self.problems)
        if name is None:
            self.err(f"{path}.name", line, "every rule needs a 'name'")
        elif not isinstance(name, str) or not _RULE_NAME_RE.match(name):
            self.err(f"{path}.name", self.line_of(raw, "name", line),
                     f"rule name {name!r} is not allowed: 1-100 letters, digits, '_', '.', ':' or '-'")
        description = self.text(
            raw.get("description", ""), f"{path}.description", self.line_of(raw, "description", line)
        )
        shadow = raw.get("shadow", False)
        if not isinstance(shadow, bool):
            self.err(f"{path}.shadow", self.line_of(raw, "shadow", line), f"must be true or false, got {_kind(shadow)}")
        when = None
        if "when" in raw:
            when = self.cond(raw["when"], f"{path}.when", self.line_of(raw, "when", line), 0)
        action = self.action(raw, path, line, "")
        if len(self.problems) > before or action is None or not isinstance(name, str):
            return None
        if not action.reason:
            action = Action(action.outcome, f"Rule '{name}' matched.", action.restrict_in, action.restrict_submission,
                            action.queue, action.priority)
        return RuleSpec(name, i, line, when, action, bool(shadow), description or "")

    def action(self, raw: dict[str, Any], path: str, line: int | None, default_reason: str) -> Action | None:
        before = len(self.problems)
        outcome = raw.get("outcome")
        if outcome is None:
            self.err(f"{path}.outcome", line, f"missing 'outcome': one of {', '.join(OUTCOMES)}")
            return None
        if outcome not in OUTCOMES:
            self.err(f"{path}.outcome", self.line_of(raw, "outcome", line),
                     f"unknown outcome {outcome!r}; allowed: {', '.join(OUTCOMES)}")
            return None
        reason = self.text(raw.get("reason", ""), f"{path}.reason", self.line_of(raw, "reason", line)) or ""
        codes: list[str] = []
        submission = False
        if "in" in raw:
            in_line = self.line_of(raw, "in", line)
            if outcome != "restrict":
                self.err(f"{path}.in", in_line, f"'in' is only for outcome 'restrict', not '{outcome}'")
            else:
                got = self.jurisdictions(raw["in"], f"{path}.in", in_line, allow_submission=True)
                if got is not None:
                    submission = "SUBMISSION" in got
                    codes = [c for c in got if c != "SUBMISSION"]
        elif outcome == "restrict":
            self.err(f"{path}.in", line,
                     "outcome 'restrict' needs 'in': a list of jurisdictions, or 'submission' (the submission's own)")
        queue = priority = None
        for key in ("queue", "priority"):
            if key in raw and outcome not in ("review", "escalate"):
                self.err(f"{path}.{key}", self.line_of(raw, key, line),
                         f"'{key}' is only for outcomes 'review' and 'escalate', not '{outcome}'")
        if outcome in ("review", "escalate"):
            queue = raw.get("queue", DEFAULT_QUEUES[outcome])
            if not isinstance(queue, str) or not _QUEUE_RE.match(queue):
                self.err(f"{path}.queue", self.line_of(raw, "queue", line),
                         f"queue {queue!r} is not allowed: 1-64 lower-case letters, digits, '_', '.' or '-'")
            priority = raw.get("priority", DEFAULT_PRIORITIES[outcome])
            if isinstance(priority, bool) or not isinstance(priority, int) or not 1 <= priority <= 10:
                self.err(f"{path}.priority", self.line_of(raw, "priority", line),
                         f"priority must be a whole number from 1 (most urgent) to 10, got {priority!r}")
        if len(self.problems) > before:
            return None
        return Action(outcome, reason or default_reason, tuple(codes), submission, queue, priority)

    def jurisdictions(
        self, value: Any, path: str, line: int | None, allow_submission: bool = False
    ) -> list[str] | None:
        """ISO 3166-1 alpha-2 codes (``UK``/``EL`` read as ``GB``/``GR``). ``EU`` is the 27 member states, plus
        ``EU`` itself in a condition (a submission may be marked Union-wide); ``submission`` only in ``in``."""
        got = self.strings(value, path, line, "jurisdiction", fold="upper")
        if got is None:
            return None
        out: list[str] = []
        for code in got:
            code = JURISDICTION_ALIASES.get(code, code)
            if code == "EU":
                out.extend(EU_MEMBERS)
                if not allow_submission:
                    out.append("EU")
            elif code == "SUBMISSION" and allow_submission:
                out.append(code)
            elif not _JURISDICTION_RE.match(code) or not _is_country(code):
                hint = " or 'submission'" if allow_submission else ""
                self.err(path, line, f"jurisdiction {code!r} is not an ISO 3166-1 alpha-2 country code (or 'EU'{hint})")
                return None
            else:
                out.append(code)
        return sorted(set(out), key=out.index)

    # conditions

    def cond(self, value: Any, path: str, line: int | None, depth: int) -> Cond | None:
        self.tick()
        if depth > MAX_DEPTH:
            self.err(path, line, f"conditions nest more than {MAX_DEPTH} deep")
            return None
        if not isinstance(value, dict) or not value:
            got = "an empty mapping" if isinstance(value, dict) else _kind(value)
            self.err(path, line, f"a condition must be a non-empty mapping (e.g. 'any_match: {{}}'), got {got}")
            return None
        for key, dup_line in getattr(value, "duplicates", ()):
            self.err(_join(path, str(key)), dup_line, f"key '{key}' is given twice")
        parts: list[Cond] = []
        for key, arg in value.items():
            sub_path = _join(path, str(key))
            sub_line = self.line_of(value, key, line)
            checker = _CONDITIONS.get(key) if isinstance(key, str) else None
            if checker is None:
                self.err(sub_path, sub_line, f"unknown condition '{key}'; allowed: {', '.join(_CONDITIONS)}")
                continue
            got = checker(self, arg, sub_path, sub_line, depth)
            if got is not None:
                parts.append(got)
        if len(parts) != len(value):
            return None
        return parts[0] if len(parts) == 1 else Cond("all", tuple(parts))

    def _combine(self, kind: str, arg: Any, path: str, line: int | None, depth: int) -> Cond | None:
        if not isinstance(arg, list) or not arg:
            got = "an empty list" if isinstance(arg, list) else _kind(arg)
            self.err(path, line, f"'{kind}' takes a non-empty list of conditions, got {got}")
            return None
        parts = [self.cond(item, f"{path}[{i}]", self.line_of(arg, i, line), depth + 1) for i, item in enumerate(arg)]
        if any(p is None for p in parts):
            return None
        return Cond(kind, tuple(parts))

    def _cond_all(self, arg: Any, path: str, line: int | None, depth: int) -> Cond | None:
        return self._combine("all", arg, path, line, depth)

    def _cond_any(self, arg: Any, path: str, line: int | None, depth: int) -> Cond | None:
        return self._combine("any", arg, path, line, depth)

    def _cond_not(self, arg: Any, path: str, line: int | None, depth: int) -> Cond | None:
        inner = self.cond(arg, path, line, depth + 1)
        return None if inner is None else Cond("not", (inner,))

    def _match_filter(self, arg: Any, path: str, line: int | None, extra: tuple[str, ...] = ()) -> MatchFilter | None:
        if arg is None or arg is True:
            arg = _Map()
        allowed = ("bank", "signal_type", "exact", "max_distance", "source", "labels", *extra)
        if not self.mapping(arg, path, line, allowed, "a match condition"):
            return None
        before = len(self.problems)
        banks = signal_types = sources = None
        if "bank" in arg:
            got = self.strings(arg["bank"], f"{path}.bank", self.line_of(arg, "bank", line), "bank")
            banks = frozenset(got) if got else None
        if "signal_type" in arg:
            st_line = self.line_of(arg, "signal_type", line)
            got = self.strings(arg["signal_type"], f"{path}.signal_type", st_line, "signal type", fold="lower")
            if got:
                unknown = [t for t in got if t not in _known_signal_types()]
                if unknown:
                    self.err(f"{path}.signal_type", st_line,
                             f"unknown signal type {unknown[0]!r}; known: {', '.join(_known_signal_types())}")
                signal_types = frozenset(got)
        exact = arg.get("exact")
        if exact is not None and not isinstance(exact, bool):
            self.err(f"{path}.exact", self.line_of(arg, "exact", line), f"must be true or false, got {_kind(exact)}")
        max_distance = None
        if "max_distance" in arg:
            max_distance = self.number(arg["max_distance"], f"{path}.max_distance",
                                       self.line_of(arg, "max_distance", line), "max_distance", 0, 1e9)
        if "source" in arg:
            src_line = self.line_of(arg, "source", line)
            got = self.strings(arg["source"], f"{path}.source", src_line, "source")
            if got:
                sources = frozenset(self.choice("source", v, f"{path}.source", src_line) for v in got)
        labels: tuple[LabelTest, ...] = ()
        if "labels" in arg:
            labels = self.labels(arg["labels"], f"{path}.labels", self.line_of(arg, "labels", line))
        if len(self.problems) > before:
            return None
        return MatchFilter(banks, signal_types, exact, max_distance, sources, labels)

    def choice(self, key: str, value: str, path: str, line: int | None) -> str:
        from bastion.banks.taxonomy import normalize_choice

        try:
            return normalize_choice(key, value)
        except InvalidLabel as exc:
            self.err(path, line, exc.message)
            return value

    def labels(self, arg: Any, path: str, line: int | None) -> tuple[LabelTest, ...]:
        if not isinstance(arg, dict) or not arg:
            self.err(path, line, f"'labels' must be a non-empty mapping of label -> test, got {_kind(arg)}")
            return ()
        for key, dup_line in getattr(arg, "duplicates", ()):
            self.err(_join(path, str(key)), dup_line, f"key '{key}' is given twice")
        out: list[LabelTest] = []
        for key, test in arg.items():
            key_path, key_line = _join(path, str(key)), self.line_of(arg, key, line)
            if not isinstance(key, str) or not _LABEL_KEY_RE.match(key):
                self.err(key_path, key_line, f"label key {key!r} is not allowed: lower-case a-z, 0-9, _ . : -")
                continue
            if key == "source":
                self.err(key_path, key_line, "a match's provenance is not a label: use 'source:' next to 'labels:'")
                continue
            if isinstance(test, dict):
                for op, dup_line in getattr(test, "duplicates", ()):
                    self.err(_join(key_path, str(op)), dup_line, f"key '{op}' is given twice")
                if not test:
                    self.err(key_path, key_line, f"empty test; use one or more of {', '.join(LABEL_OPS)}")
                    continue
                ops = []
                for op, operand in test.items():
                    op_line = self.line_of(test, op, key_line)
                    got = self.label_op(key, op, operand, _join(key_path, str(op)), op_line)
                    if got is not None:
                        ops.append(got)
                out.append(LabelTest(key, tuple(ops)))
            else:
                got = self.label_op(key, "in", test, key_path, key_line)
                if got is not None:
                    out.append(LabelTest(key, (got,)))
        return tuple(out)

    def label_op(self, key: str, op: Any, operand: Any, path: str, line: int | None) -> tuple[str, Any] | None:
        if op not in LABEL_OPS:
            self.err(path, line, f"unknown operator {op!r}; allowed: {', '.join(LABEL_OPS)}")
            return None
        if op == "exists":
            if not isinstance(operand, bool):
                self.err(path, line, f"'exists' takes true or false, got {_kind(operand)}")
                return None
            return (op, operand)
        if op in ("gte", "gt", "lte", "lt"):
            number = self.number(operand, path, line, f"'{op}'", words=True)
            return None if number is None else (op, number)
        values = self.strings(operand, path, line, f"label '{key}'")
        if values is None:
            return None
        if op in ("eq", "ne") and len(values) != 1:
            self.err(path, line, f"'{op}' takes one value; use 'in'/'not_in' for a list")
            return None
        normalised = frozenset(self.label_value(key, v, path, line) for v in values)
        if op in ("eq", "ne"):
            return ("in" if op == "eq" else "not_in", normalised)
        return (op, normalised)

    def label_value(self, key: str, value: str, path: str, line: int | None) -> str:
        from bastion.banks.entities import canonical_entity_name
        from bastion.banks.taxonomy import _fold

        if key in ("category", "ideology"):
            return self.choice(key, value, path, line)
        if key == "entity":
            return _fold(canonical_entity_name(value))
        return _fold_value(value)

    def _cond_any_match(self, arg: Any, path: str, line: int | None, depth: int) -> Cond | None:
        f = self._match_filter(arg, path, line, extra=("min_count",))
        min_count = 1
        if f is not None and isinstance(arg, dict) and "min_count" in arg:
            got = arg["min_count"]
            if isinstance(got, bool) or not isinstance(got, int) or got < 1:
                self.err(f"{path}.min_count", self.line_of(arg, "min_count", line),
                         f"min_count must be a whole number >= 1, got {got!r}")
                return None
            min_count = got
        return None if f is None else Cond("any_match", (f, min_count, "matches"))

    def _cond_all_matches(self, arg: Any, path: str, line: int | None, depth: int) -> Cond | None:
        f = self._match_filter(arg, path, line)
        return None if f is None else Cond("all_matches", (f,))

    def _cond_suppressed_match(self, arg: Any, path: str, line: int | None, depth: int) -> Cond | None:
        f = self._match_filter(arg, path, line)
        return None if f is None else Cond("any_match", (f, 1, "suppressed"))

    def _cond_classifier(self, arg: Any, path: str, line: int | None, depth: int) -> Cond | None:
        if not self.mapping(arg, path, line, ("name", "label", "min_score", "max_score"), "a classifier condition"):
            return None
        before = len(self.problems)
        names = labels = None
        if "name" in arg:
            got = self.strings(arg["name"], f"{path}.name", self.line_of(arg, "name", line), "classifier", fold="lower")
            names = frozenset(got) if got else None
        if "label" in arg:
            got = self.strings(arg["label"], f"{path}.label", self.line_of(arg, "label", line), "label")
            labels = frozenset(_fold_value(v) for v in got) if got else None
        if "min_score" not in arg:
            self.err(f"{path}.min_score", line, "a classifier condition needs 'min_score' (0 to 1)")
            return None
        lo = self.number(arg["min_score"], f"{path}.min_score", self.line_of(arg, "min_score", line), "min_score", 0, 1)
        hi = None
        if "max_score" in arg:
            hi = self.number(arg["max_score"], f"{path}.max_score", self.line_of(arg, "max_score", line),
                             "max_score", 0, 1)
        if len(self.problems) > before:
            return None
        return Cond("classifier", (names, labels, lo, hi))

    def _cond_entity(self, arg: Any, path: str, line: int | None, depth: int) -> Cond | None:
        from bastion.banks import entities as ent
        from bastion.banks.taxonomy import _fold

        if arg is None or arg is True:
            arg = _Map()
        if not self.mapping(arg, path, line, ("lists", "names", "min_count"), "an entity condition"):
            return None
        before = len(self.problems)
        lists = names = None
        if "lists" in arg:
            l_line = self.line_of(arg, "lists", line)
            got = self.strings(arg["lists"], f"{path}.lists", l_line, "list", fold="lower")
            known = [x.id for x in ent.entity_lists()]
            if got:
                resolved = [LIST_ALIASES.get(x, x) for x in got]
                bad = [x for x in resolved if x not in known]
                if bad:
                    self.err(f"{path}.lists", l_line,
                             f"unknown designation list {bad[0]!r}; known: {', '.join(known)} (or UN, UK, EU)")
                lists = frozenset(resolved)
        if "names" in arg:
            n_line = self.line_of(arg, "names", line)
            got = self.strings(arg["names"], f"{path}.names", n_line, "entity name")
            keys: set[str] = set()
            for name in got or ():
                entity = ent.resolve(name)
                if entity is None:
                    close = ", ".join(e.name for e in ent.search(name, limit=3))
                    hint = f"; did you mean: {close}" if close else ""
                    self.err(f"{path}.names", n_line,
                             f"{name!r} names no single organisation on the bundled designation lists{hint}")
                    continue
                keys.add(entity.key)
                keys.add("name:" + _fold(entity.name))
            names = frozenset(keys)
        min_count = arg.get("min_count", 1)
        if isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 1:
            self.err(f"{path}.min_count", self.line_of(arg, "min_count", line),
                     f"min_count must be a whole number >= 1, got {min_count!r}")
        if len(self.problems) > before:
            return None
        return Cond("entity", (lists, names, min_count))

    def _cond_jurisdiction(self, arg: Any, path: str, line: int | None, depth: int) -> Cond | None:
        got = self.jurisdictions(arg, path, line)
        return None if got is None else Cond("jurisdiction", (frozenset(got),))

    def _set_cond(self, kind: str, arg: Any, path: str, line: int | None, allowed: tuple[str, ...] | None,
                  pattern: re.Pattern[str] | None = None) -> Cond | None:
        got = self.strings(arg, path, line, kind.replace("_", " "), pattern=pattern, fold="lower")
        if got is None:
            return None
        if allowed is not None:
            bad = [v for v in got if v not in allowed]
            if bad:
                self.err(path, line, f"unknown {kind.replace('_', ' ')} {bad[0]!r}; allowed: {', '.join(allowed)}")
                return None
        return Cond(kind, (frozenset(got),))

    def _cond_surface(self, arg: Any, path: str, line: int | None, depth: int) -> Cond | None:
        return self._set_cond("surface", arg, path, line, None, _IDENT_RE)

    def _cond_content_type(self, arg: Any, path: str, line: int | None, depth: int) -> Cond | None:
        return self._set_cond("content_type", arg, path, line, CONTENT_TYPES)

    def _cond_source(self, arg: Any, path: str, line: int | None, depth: int) -> Cond | None:
        return self._set_cond("source", arg, path, line, SOURCES)

    def _cond_language(self, arg: Any, path: str, line: int | None, depth: int) -> Cond | None:
        return self._set_cond("language", arg, path, line, None, _LANG_RE)

    def _cond_prior_violations(self, arg: Any, path: str, line: int | None, depth: int) -> Cond | None:
        if isinstance(arg, int) and not isinstance(arg, bool):
            arg = {"gte": arg}
        if not isinstance(arg, dict) or not arg:
            self.err(path, line, f"prior_violations takes a number (meaning >=) or e.g. {{gte: 2}}, got {_kind(arg)}")
            return None
        if not self.mapping(arg, path, line, NUMBER_OPS, "prior_violations"):
            return None
        ops = []
        for op, operand in arg.items():
            n = self.number(operand, _join(path, op), self.line_of(arg, op, line), f"'{op}'", 0, 1e9)
            if n is None:
                return None
            ops.append((op, n))
        return Cond("prior_violations", tuple(ops))


_CONDITIONS = {
    "all": _Checker._cond_all,
    "any": _Checker._cond_any,
    "not": _Checker._cond_not,
    "any_match": _Checker._cond_any_match,
    "match": _Checker._cond_any_match,  # the same as any_match
    "all_matches": _Checker._cond_all_matches,
    "suppressed_match": _Checker._cond_suppressed_match,
    "classifier": _Checker._cond_classifier,
    "entity": _Checker._cond_entity,
    "jurisdiction": _Checker._cond_jurisdiction,
    "surface": _Checker._cond_surface,
    "content_type": _Checker._cond_content_type,
    "source": _Checker._cond_source,
    "language": _Checker._cond_language,
    "prior_violations": _Checker._cond_prior_violations,
}


def _is_country(code: str) -> bool:
    try:
        import iso3166
    except ImportError:  # pragma: no cover - a dependency; without it only the form is checked
        return True
    return code in iso3166.countries_by_alpha2


def _known_signal_types() -> tuple[str, ...]:
    from bastion import signals

    return tuple(sorted(set(KNOWN_SIGNAL_TYPES) | {t.name for t in signals.all_types()}))


def exact_signal_types() -> frozenset[str]:
    """Signal types compared by equality alone (a match by one is a match of the very same bytes or text)."""
    from bastion import signals

    return EXACT_SIGNAL_TYPES | {t.name for t in signals.all_types() if t.exact}


def _fold_value(value: Any) -> str:
    return " ".join(str(value).split()).casefold()


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"the text {value!r}" if len(value) < 40 else "text"
    if isinstance(value, int | float):
        return f"the number {value}"
    return type(value).__name__


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def parse_policy(source: str) -> PolicySpec:
    """The checked, normalised form of a rules file, or InvalidPolicy listing every problem with its line."""
    if not isinstance(source, str):
        raise _invalid([Problem("", f"the policy must be YAML text, got {_kind(source)}")])
    if len(source) > MAX_SOURCE_CHARS:
        raise _invalid([Problem("", f"the policy is {len(source)} characters; at most {MAX_SOURCE_CHARS}")])
    doc = load_yaml(source)
    checker = _Checker()
    try:
        spec = checker.policy(doc)
    except _TooComplex:
        raise _invalid([Problem("", f"the policy has more than {MAX_NODES} conditions (aliases included)")]) from None
    if checker.problems or spec is None:
        problems = sorted(checker.problems, key=lambda p: (p.line or 0))
        raise _invalid(problems or [Problem("", "the policy is invalid")])
    return spec


__all__ = [
    "Action",
    "Cond",
    "LabelTest",
    "MatchFilter",
    "PolicySpec",
    "Problem",
    "RuleSpec",
    "exact_signal_types",
    "load_yaml",
    "parse_policy",
]
