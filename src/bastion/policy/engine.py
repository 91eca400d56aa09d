"""The rules engine: a checked rules file compiled to plain Python closures, and :func:`decide` over evidence.

``compile_policy(source)`` parses and checks the YAML once (:mod:`bastion.policy.rules`) and turns every condition
into a closure; it is memoised on the source text, so compiling the same text again is a dictionary lookup.
``decide(policy, evidence, version)`` then costs a handful of attribute reads and set lookups per rule: tens of
thousands of decisions per second on one core (``bench/bench_policy.py``).

Semantics: live rules are tried in file order and the first whose ``when`` holds decides; when none holds, the
policy's ``default`` decides. Shadow rules are all evaluated, whatever decided, and reported in
``Verdict.shadow``; they never change the outcome.
"""

from __future__ import annotations

import hashlib
import operator
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

from bastion.banks.taxonomy import _fold
from bastion.policy import Evidence, Verdict
from bastion.policy.rules import (
    EU_MEMBERS,
    SEVERITY_WORDS,
    Action,
    Cond,
    LabelTest,
    MatchFilter,
    PolicySpec,
    RuleSpec,
    exact_signal_types,
    parse_policy,
)


class _Ctx:
    """The evidence, with the few derived values conditions share computed once per decision."""

    __slots__ = ("ev", "jurisdictions", "in_jurisdictions", "language", "surface", "content_type", "source")

    def __init__(self, ev: Evidence) -> None:
        self.ev = ev
        self.jurisdictions = [str(j).strip().upper() for j in ev.jurisdictions or ()]
        # what jurisdiction conditions test: a Union-wide submission ("EU") is in every member state too
        self.in_jurisdictions = set(self.jurisdictions)
        if "EU" in self.in_jurisdictions:
            self.in_jurisdictions.update(EU_MEMBERS)
        self.language = (ev.language or "").strip().lower()
        self.surface = (ev.surface or "").strip().lower()
        self.content_type = (ev.content_type or "").strip().lower()
        self.source = (ev.source or "").strip().lower()


Predicate = Callable[[_Ctx], bool]
_NUMBER_OPS = {"gte": operator.ge, "gt": operator.gt, "lte": operator.le, "lt": operator.lt, "eq": operator.eq}


def _and(fns: list[Callable[[Any], bool]]) -> Callable[[Any], bool]:
    """One closure for "all of fns" (unrolled for short lists: no generator per call)."""
    if not fns:
        return lambda x: True
    if len(fns) == 1:
        return fns[0]
    if len(fns) == 2:
        a, b = fns
        return lambda x: a(x) and b(x)
    if len(fns) == 3:
        a, b, c = fns
        return lambda x: a(x) and b(x) and c(x)
    head, rest = fns[0], _and(fns[1:])
    return lambda x: head(x) and rest(x)


def _or(fns: list[Callable[[Any], bool]]) -> Callable[[Any], bool]:
    if len(fns) == 1:
        return fns[0]
    if len(fns) == 2:
        a, b = fns
        return lambda x: a(x) or b(x)
    head, rest = fns[0], _or(fns[1:])
    return lambda x: head(x) or rest(x)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in SEVERITY_WORDS:
            return SEVERITY_WORDS[text]
        try:
            return float(text)
        except ValueError:
            return None
    return None


def _label_folder(key: str) -> Callable[[Any], str]:
    if key == "entity":
        return lambda v: _fold(str(v))
    return lambda v: " ".join(str(v).split()).casefold()


def _compile_label_test(test: LabelTest) -> Callable[[dict[str, Any]], bool]:
    key = test.key
    fold = _label_folder(key)
    checks: list[Callable[[Any], bool]] = []
    for op, operand in test.ops:
        if op == "exists":
            want = operand
            checks.append(lambda v, want=want: (v is not None and v != "") == want)
        elif op == "in":
            checks.append(lambda v, s=operand: v is not None and fold(v) in s)
        elif op == "not_in":
            checks.append(lambda v, s=operand: v is None or fold(v) not in s)
        else:
            cmp = _NUMBER_OPS[op]

            def numeric(v: Any, cmp: Callable[[float, float], bool] = cmp, bound: float = operand) -> bool:
                n = _number(v)
                return n is not None and cmp(n, bound)

            checks.append(numeric)

    check = _and(checks)
    return lambda labels: check(labels.get(key))


def _compile_match_filter(f: MatchFilter) -> Callable[[dict[str, Any]], bool]:
    checks: list[Callable[[dict[str, Any]], bool]] = []
    if f.banks is not None:
        checks.append(lambda m, s=f.banks: m.get("bank") in s)
    if f.signal_types is not None:
        checks.append(lambda m, s=f.signal_types: m.get("signal_type") in s)
    if f.exact is not None:
        exact_types, want = exact_signal_types(), f.exact
        checks.append(lambda m: (m.get("signal_type") in exact_types) == want)
    if f.max_distance is not None:
        limit = f.max_distance

        def near(m: dict[str, Any]) -> bool:
            d = m.get("distance")
            if type(d) is not int and type(d) is not float:
                d = _number(d)
            return d is not None and d <= limit

        checks.append(near)
    if f.sources is not None:
        checks.append(lambda m, s=f.sources: m.get("source") in s)
    for test in f.labels:
        label_ok = _compile_label_test(test)
        checks.append(lambda m, label_ok=label_ok: label_ok(m.get("labels") or {}))
    return _and(checks)


def _compile(cond: Cond) -> Predicate:
    kind, args = cond.kind, cond.args
    if kind in ("all", "any"):
        parts = [_compile(c) for c in args]
        return _and(parts) if kind == "all" else _or(parts)
    if kind == "not":
        inner = _compile(args[0])
        return lambda ctx: not inner(ctx)
    if kind == "any_match":
        f, min_count, attr = args
        ok = _compile_match_filter(f)
        if min_count == 1:

            def any_match(ctx: _Ctx) -> bool:
                for m in getattr(ctx.ev, attr):  # noqa: SIM110 - a loop is faster than any() over a generator
                    if ok(m):
                        return True
                return False

            return any_match
        return lambda ctx: sum(1 for m in getattr(ctx.ev, attr) if ok(m)) >= min_count
    if kind == "all_matches":
        ok = _compile_match_filter(args[0])
        return lambda ctx: bool(ctx.ev.matches) and all(ok(m) for m in ctx.ev.matches)
    if kind == "classifier":
        names, labels, lo, hi = args

        def classifier_ok(s: dict[str, Any]) -> bool:
            if names is not None and str(s.get("classifier", "")).lower() not in names:
                return False
            if labels is not None and " ".join(str(s.get("label", "")).split()).casefold() not in labels:
                return False
            score = _number(s.get("score"))
            return score is not None and score >= lo and (hi is None or score <= hi)

        return lambda ctx: any(classifier_ok(s) for s in ctx.ev.classifier_scores)
    if kind == "entity":
        lists, keys, min_count = args

        def entity_ok(e: dict[str, Any]) -> bool:
            if lists is not None and not lists.intersection(e.get("lists") or ()):
                return False
            return keys is None or e.get("entity") in keys or "name:" + _fold(str(e.get("name", ""))) in keys

        return lambda ctx: sum(1 for e in ctx.ev.entities if entity_ok(e)) >= min_count
    if kind == "jurisdiction":
        wanted = args[0]
        return lambda ctx: not wanted.isdisjoint(ctx.in_jurisdictions)
    if kind in ("surface", "content_type", "source"):
        wanted = args[0]
        return lambda ctx: getattr(ctx, kind) in wanted
    if kind == "language":
        wanted = args[0]
        return lambda ctx: bool(ctx.language) and (
            ctx.language in wanted or ctx.language.split("-", 1)[0] in wanted
        )
    if kind == "prior_violations":
        ops = [(_NUMBER_OPS[op], n) for op, n in args]
        return lambda ctx: all(cmp(ctx.ev.prior_violations or 0, n) for cmp, n in ops)
    raise ValueError(f"unknown condition kind {kind!r}")  # pragma: no cover - the checker admits only the above


@dataclass(frozen=True)
class CompiledRule:
    spec: RuleSpec
    test: Predicate

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass(frozen=True)
class CompiledPolicy:
    """A checked, compiled rules file. Immutable and shared: the same object serves every organisation whose rules
    file has the same text (the version in force is passed to :func:`decide`, not stored here)."""

    source: str
    sha256: str
    spec: PolicySpec
    live: tuple[CompiledRule, ...]
    shadow: tuple[CompiledRule, ...]

    @property
    def rule_names(self) -> list[str]:
        return [r.name for r in self.spec.rules]

    def summary(self) -> dict[str, Any]:
        return {
            "sha256": self.sha256,
            "rules": len(self.live),
            "shadow_rules": len(self.shadow),
            "default": self.spec.default.outcome,
            "rule_names": self.rule_names,
        }


@lru_cache(maxsize=1024)
def compile_policy(source: str) -> CompiledPolicy:
    """Check and compile a rules file (raises :class:`~bastion.errors.InvalidPolicy`). Memoised on the text."""
    spec = parse_policy(source)
    live = tuple(CompiledRule(r, _compile(r.when) if r.when else _always) for r in spec.live_rules)
    shadow = tuple(CompiledRule(r, _compile(r.when) if r.when else _always) for r in spec.shadow_rules)
    return CompiledPolicy(source, hashlib.sha256(source.encode("utf-8")).hexdigest(), spec, live, shadow)


def _always(_: _Ctx) -> bool:
    return True


def _restrict_in(action: Action, ctx: _Ctx) -> list[str]:
    if action.outcome != "restrict":
        return []
    codes = list(action.restrict_in)
    if action.restrict_submission:
        codes.extend(ctx.jurisdictions)
    return sorted(set(codes))


def decide(policy: CompiledPolicy, evidence: Evidence | dict[str, Any], version: int | None = None) -> Verdict:
    """What ``policy`` says about ``evidence``; ``version`` is recorded as ``Verdict.policy_version``.

    ``Verdict.rule`` is the name of the deciding rule, or None when the default decided.
    """
    ev = evidence if isinstance(evidence, Evidence) else Evidence.from_dict(evidence)
    ctx = _Ctx(ev)
    chosen: RuleSpec | None = None
    for rule in policy.live:
        if rule.test(ctx):
            chosen = rule.spec
            break
    action = chosen.action if chosen is not None else policy.spec.default
    shadow: list[dict[str, Any]] = []
    for rule in policy.shadow:
        if rule.test(ctx):
            a = rule.spec.action
            entry: dict[str, Any] = {"rule": rule.name, "outcome": a.outcome, "reason": a.reason}
            if a.outcome == "restrict":
                entry["restrict_in"] = _restrict_in(a, ctx)
            if a.queue is not None:
                entry["queue"], entry["priority"] = a.queue, a.priority
            shadow.append(entry)
    return Verdict(
        outcome=action.outcome,
        rule=chosen.name if chosen is not None else None,
        policy_version=version,
        reason=action.reason,
        restrict_in=_restrict_in(action, ctx),
        queue=action.queue,
        priority=action.priority,
        shadow=shadow,
    )


def default_source() -> str:
    """The text of the built-in policy (``default.yaml``), used by organisations that have not set their own."""
    return resources.files("bastion.policy").joinpath("default.yaml").read_text(encoding="utf-8")


def demo_source() -> str:
    """The demo organisation's rules (``demo.yaml``): the default plus a shadow rule and a restriction."""
    return resources.files("bastion.policy").joinpath("demo.yaml").read_text(encoding="utf-8")


def default_policy() -> CompiledPolicy:
    return compile_policy(default_source())
