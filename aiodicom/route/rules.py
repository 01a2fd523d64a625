"""Routing rules: which instance goes where, decided from the association and a peek at the header.

A rule's conditions all have to hold (AND); a condition given a list holds when one of its plain
patterns matches (OR) and none of its "!"-negated patterns does. Patterns:

- `re:<regex>`: a Python regular expression searched in the value as text (anchor with ^ and $);
- for attributes, otherwise C-FIND semantics (PS3.4 C.2.2.2, reusing archive/matching.py): `*` and
  `?` wild cards on text VRs, `a-b` / `a-` / `-b` ranges on DA, TM, DT, a backslash-separated list
  of values, `""` for an empty or absent attribute; numbers (IS, DS, US, UL, SS, SL, FL, FD, ...)
  compare by value, also as ranges `lo-hi`. UIDs (VR UI) take wild cards too;
- for AE titles and SOP classes, a wild card pattern; for the peer, an address, a CIDR network
  (`10.0.0.0/8`) or a wild card pattern.

Rules are evaluated in order; the first match decides unless it says `continue = true`, in which case
later rules may add destinations. An instance no rule matches gets the default action.
Everything works on raw top-level values read without decoding the data set (archive/peek.py):
only tag morphing (applied before forwarding) decodes it.
"""

from __future__ import annotations

import ipaddress
import re
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final, Protocol, TypeVar

from pydicom import Dataset

from ..archive.matching import Query, compile_query
from .attributes import (
    NUMERIC_VRS,
    SPECIFIC_CHARACTER_SET,
    Attribute,
    Facts,
    RuleError,
    as_text,
    attribute,
)
from .morph import Morph, compile_morph
from .names import sop_class_uid

# ---- patterns ---------------------------------------------------------------------------------------

class Pattern(Protocol):
    def test(self, value: Any) -> bool: ...


@dataclass(frozen=True, slots=True)
class RegexPattern:
    regex: re.Pattern[str]

    def test(self, value: Any) -> bool:
        return value is not None and self.regex.search(as_text(value)) is not None


@dataclass(frozen=True, slots=True)
class WildcardPattern:
    """`*` any run, `?` one character (PS3.4 C.2.2.2.4), case sensitive, for AE titles and UIDs."""

    regex: re.Pattern[str]

    @classmethod
    def of(cls, pattern: str) -> WildcardPattern:
        body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
        return cls(re.compile(body, re.DOTALL))

    def test(self, value: Any) -> bool:
        return value is not None and self.regex.fullmatch(as_text(value).strip(" \0")) is not None


@dataclass(frozen=True, slots=True)
class QueryPattern:
    """One C-FIND key compiled by archive/matching.py: the candidate is {tag: value}."""

    tag: int
    query: Query

    def test(self, value: Any) -> bool:
        return self.query.matches({self.tag: value})


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise RuleError(f"{text!r} is not a number") from None


@dataclass(frozen=True, slots=True)
class NumberPattern:
    """Numbers by value: `5`, `1\\2\\3` (any of them), ranges `10-20`, `10-`, `-20` (inclusive, as C-FIND
    ranges: a leading "-" means "up to"; a negative bound is written `-5--1`)."""

    ranges: tuple[tuple[float, float], ...]

    @classmethod
    def of(cls, text: str) -> NumberPattern:
        ranges = []
        for part in (p.strip() for p in text.split("\\")):
            m = re.fullmatch(r"(-?[^-]*)-(-?[^-]*)", part)
            if m and (m[1] or m[2]):
                lo = _number(m[1]) if m[1] else float("-inf")
                hi = _number(m[2]) if m[2] else float("inf")
            else:
                lo = hi = _number(part)
            ranges.append((lo, hi))
        return cls(tuple(ranges))

    def test(self, value: Any) -> bool:
        if value is None:
            return False
        numbers: list[float] = list(value) if isinstance(value, tuple) else []
        if isinstance(value, str):
            for piece in value.split("\\"):
                try:
                    numbers.append(float(piece.strip(" \0")))
                except ValueError:
                    continue
        return any(lo <= n <= hi for n in numbers for lo, hi in self.ranges)


@dataclass(frozen=True, slots=True)
class NetworkPattern:
    network: ipaddress.IPv4Network | ipaddress.IPv6Network

    def test(self, value: Any) -> bool:
        try:
            return ipaddress.ip_address(as_text(value)) in self.network
        except ValueError:
            return False


# ---- conditions -------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Condition:
    """One field of a rule: holds when some plain pattern matches (or there are none) and no negated one does."""

    field: str  # what the config called it, for messages
    getter: Any  # Facts -> value
    include: tuple[Pattern, ...]
    exclude: tuple[Pattern, ...]

    def holds(self, facts: Facts) -> bool:
        value = self.getter(facts)
        if self.include and not any(p.test(value) for p in self.include):
            return False
        return not any(p.test(value) for p in self.exclude)


def _specs(raw: Any, where: str) -> list[str]:
    items = raw if isinstance(raw, list) else [raw]
    out = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, (str, int, float)):
            raise RuleError(f"{where}: expected text or a list of texts, got {item!r}")
        text = str(item)
        if not text.strip():
            raise RuleError(f"{where}: empty pattern (use \"*\" for any value, '\"\"' for an empty or absent one)")
        out.append(text)
    if not out:
        raise RuleError(f"{where}: an empty list matches nothing")
    return out


def _regex(text: str, where: str) -> RegexPattern:
    try:
        return RegexPattern(re.compile(text))
    except re.error as exc:
        raise RuleError(f"{where}: bad regular expression {text!r}: {exc}") from None


def _split_negation(spec: str) -> tuple[bool, str]:
    return (True, spec[1:]) if spec.startswith("!") and len(spec) > 1 else (False, spec)


def _condition(name: str, getter: Any, raw: Any, where: str, compile_one: Any) -> Condition:
    include: list[Pattern] = []
    exclude: list[Pattern] = []
    for spec in _specs(raw, where):
        negated, body = _split_negation(spec)
        pattern = _regex(body[3:], where) if body.startswith("re:") else compile_one(body)
        (exclude if negated else include).append(pattern)
    return Condition(name, getter, tuple(include), tuple(exclude))


class _AttrGetter:
    """facts -> value of one attribute; carries its tag so the rule set knows what to peek."""

    __slots__ = ("attr", "tag")

    def __init__(self, attr: Attribute) -> None:
        self.attr = attr
        self.tag = attr.tag

    def __call__(self, facts: Facts) -> Any:
        return facts.value(self.attr)


# Binary values and sequences: the header peek gives their raw bytes, which no pattern can sensibly match
UNMATCHABLE_VRS: Final = frozenset({"SQ", "OB", "OW", "OF", "OD", "OL", "OV", "UN", "AT"})


def attribute_pattern(attr: Attribute, text: str, where: str) -> Pattern:
    """One non-regex pattern on an attribute, with the semantics of its VR."""
    if attr.vr in NUMERIC_VRS:
        try:
            return NumberPattern.of(text)
        except RuleError as exc:
            raise RuleError(f"{where}: {exc}") from None
    _check_matchable(attr, where)
    identifier = Dataset()
    try:
        with warnings.catch_warnings():  # pydicom warns that "CT*" is no valid CS: it is a pattern
            warnings.simplefilter("ignore")
            # UIDs take wild cards here, which C-FIND does not allow (C.2.2.2.4): matched as LO text.
            identifier.add_new(attr.tag, "LO" if attr.vr == "UI" else attr.vr, text)
            query = compile_query(identifier)
    except ValueError as exc:
        raise RuleError(f"{where}: {exc}") from None
    return QueryPattern(attr.tag, query)


def attribute_condition(attr: Attribute, raw: Any, where: str) -> Condition:
    _check_matchable(attr, where)  # for `re:` patterns too: they would search raw binary bytes
    return _condition(attr.name, _AttrGetter(attr), raw, where, lambda text: attribute_pattern(attr, text, where))


def _check_matchable(attr: Attribute, where: str) -> None:
    if attr.vr in UNMATCHABLE_VRS:
        raise RuleError(f"{where}: {attr.name} has VR {attr.vr}, which rules cannot match (top-level text and "
                        f"numbers only)")


def _peer_pattern(text: str, where: str) -> Pattern:
    if "/" in text or _is_address(text):
        try:
            return NetworkPattern(ipaddress.ip_network(text, strict=False))
        except ValueError as exc:
            raise RuleError(f"{where}: {text!r} is not an address or network: {exc}") from None
    return WildcardPattern.of(text)


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _sop_class_pattern(text: str, where: str) -> Pattern:
    if "*" in text or "?" in text:
        return WildcardPattern.of(text)
    uid = sop_class_uid(text)
    if uid is None:
        raise RuleError(f"{where}: {text!r} is not a SOP class UID or keyword (e.g. CTImageStorage)")
    return WildcardPattern.of(uid)



# ---- rules ------------------------------------------------------------------------------------------

class Action(Enum):
    FORWARD = "forward"
    DROP = "drop"  # accepted (Success) and discarded
    REJECT = "reject"  # refused with a failure status
    # No rule matched and [router].default is not set: refused so that the sender keeps the instance (a
    # router must not acknowledge and lose what nobody said to drop). Not a value one can configure.
    UNROUTED = "unrouted"


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    conditions: tuple[Condition, ...] = ()
    action: Action = Action.FORWARD
    destinations: tuple[str, ...] = ()
    morph: Morph | None = None
    keep_going: bool = False  # `continue = true`: later rules may add destinations

    def matches(self, facts: Facts) -> bool:
        return all(c.holds(facts) for c in self.conditions)

    @property
    def tags(self) -> frozenset[int]:
        """Attributes its conditions read from the data set."""
        out = set()
        for c in self.conditions:
            tag = getattr(c.getter, "tag", None)
            if tag is not None:
                out.add(tag)
        return frozenset(out)


@dataclass(frozen=True, slots=True)
class Delivery:
    destination: str
    rule: str
    morph: Morph | None


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    deliveries: tuple[Delivery, ...]
    rules: tuple[str, ...]  # the rules that matched, in order ("default" when none did)


_RULE_KEYS: Final = frozenset({"name", "calling_ae", "called_ae", "peer", "sop_class", "modality", "match",
                               "forward", "action", "morph", "continue"})


T = TypeVar("T")


class RuleProblems(RuleError):
    """Every problem of one rule (`problems`), so that one --check lists them all."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def compile_rule(table: Mapping[str, Any], where: str, destinations: Iterable[str]) -> Rule:
    """A rule from its TOML table; `where` prefixes every message (e.g. "rule 2 ('ct')").

    Raises RuleProblems listing every problem found, not only the first."""
    problems: list[str] = []

    def checked(make: Callable[[], T]) -> T | None:
        try:
            return make()
        except RuleError as exc:
            problems.append(str(exc))
            return None

    unknown = set(table) - _RULE_KEYS
    if unknown:
        problems.append(f"{where}: unknown keys {sorted(unknown)} (allowed: {', '.join(sorted(_RULE_KEYS))})")
    known = set(destinations)
    conditions: list[Condition | None] = []
    wild = WildcardPattern.of
    for key, getter in (("calling_ae", lambda f: f.calling_ae), ("called_ae", lambda f: f.called_ae)):
        if key in table:
            conditions.append(checked(lambda k=key, g=getter: _condition(k, g, table[k], f"{where}.{k}", wild)))
    if "peer" in table:
        conditions.append(checked(lambda: _condition("peer", lambda f: f.peer, table["peer"], f"{where}.peer",
                                                     lambda text: _peer_pattern(text, f"{where}.peer"))))
    if "sop_class" in table:
        conditions.append(checked(lambda: _condition(
            "sop_class", lambda f: f.sop_class_uid, table["sop_class"], f"{where}.sop_class",
            lambda text: _sop_class_pattern(text, f"{where}.sop_class"))))
    if "modality" in table:
        modality = attribute("Modality")
        conditions.append(checked(lambda: _condition(
            "modality", _AttrGetter(modality), table["modality"], f"{where}.modality",
            lambda text: attribute_pattern(modality, text, f"{where}.modality"))))
    match = table.get("match", {})
    if not isinstance(match, Mapping):
        problems.append(f"{where}.match: expected a table of attribute = pattern")
        match = {}
    for name, raw in match.items():
        try:
            attr = attribute(name)
        except RuleError as exc:
            problems.append(f"{where}.match: {exc}")
            continue
        conditions.append(checked(lambda a=attr, n=name, r=raw: attribute_condition(a, r, f"{where}.match.{n}")))
    action, targets = checked(lambda: _action(table, where, known)) or (None, ())
    morph = None
    if "morph" in table:
        if not isinstance(table["morph"], Mapping):
            problems.append(f"{where}.morph: expected a table (set, replace, delete, delete_everywhere, delete_private)")
        else:
            morph = checked(lambda: compile_morph(table["morph"], f"{where}.morph"))
            if action is not None and action is not Action.FORWARD:
                problems.append(f"{where}: morph needs destinations to forward to")
            morph = None if morph is None or morph.empty else morph
    keep_going = table.get("continue", False)
    if not isinstance(keep_going, bool):
        problems.append(f"{where}.continue: expected true or false")
    name = table.get("name", where)
    if not isinstance(name, str) or not name:
        problems.append(f"{where}.name: expected text")
    if problems:
        raise RuleProblems(problems)
    assert action is not None
    return Rule(name, tuple(c for c in conditions if c is not None), action, targets, morph, keep_going)


def _action(table: Mapping[str, Any], where: str, known: set[str]) -> tuple[Action, tuple[str, ...]]:
    forward = table.get("forward")
    action = table.get("action")
    if forward is not None and action not in (None, "forward"):
        raise RuleError(f"{where}: give either forward = [...] or action = \"{action}\", not both")
    if forward is None:
        if action in ("drop", "reject"):
            return Action(action), ()
        raise RuleError(f"{where}: needs forward = [\"DESTINATION\", ...] or action = \"drop\" / \"reject\"")
    targets = forward if isinstance(forward, list) else [forward]
    if not targets or not all(isinstance(t, str) for t in targets):
        raise RuleError(f"{where}.forward: expected a list of destination names")
    for t in targets:
        if t not in known:
            hint = f" (known: {', '.join(sorted(known))})" if known else " (no [destination.*] is configured)"
            raise RuleError(f"{where}.forward: unknown destination {t!r}{hint}")
    return Action.FORWARD, tuple(dict.fromkeys(targets))


def compile_default(raw: Any, destinations: Iterable[str]) -> Rule:
    """The default action: "drop", "reject", or destination name(s) to forward to; None (not set): refuse."""
    if raw is None:
        return Rule("default", (), Action.UNROUTED)
    if raw in ("drop", "reject"):
        return Rule("default", (), Action(raw))
    if raw == []:  # forward to nowhere
        return Rule("default", (), Action.DROP)
    table = {"forward": raw} if isinstance(raw, (str, list)) else raw
    if not isinstance(table, Mapping):
        raise RuleError("router.default: expected \"drop\", \"reject\" or a list of destinations")
    return compile_rule({**table, "name": "default"}, "router.default", destinations)


@dataclass(frozen=True, slots=True)
class RuleSet:
    rules: tuple[Rule, ...]
    default: Rule

    @property
    def tags(self) -> frozenset[int]:
        """Every attribute a rule reads, plus Specific Character Set to decode text ones."""
        tags = frozenset().union(*(r.tags for r in (*self.rules, self.default)))
        return tags | {SPECIFIC_CHARACTER_SET} if tags else tags

    def route(self, facts: Facts) -> Decision:
        deliveries: dict[str, Delivery] = {}
        matched: list[str] = []
        for rule in self.rules:
            if not rule.matches(facts):
                continue
            matched.append(rule.name)
            if rule.action is Action.REJECT:
                return Decision(Action.REJECT, (), tuple(matched))
            if rule.action is Action.DROP:
                break
            for dest in rule.destinations:  # the first rule to name a destination decides its morph
                deliveries.setdefault(dest, Delivery(dest, rule.name, rule.morph))
            if not rule.keep_going:
                break
        if not matched:
            rule = self.default
            if not rule.matches(facts):  # a default with conditions they exclude: nothing said to drop it
                return Decision(Action.UNROUTED, (), ("default",))
            if rule.action is Action.DROP:
                return Decision(Action.DROP, (), ("default",))
            if rule.action in (Action.REJECT, Action.UNROUTED):
                return Decision(rule.action, (), ("default",))
            return Decision(Action.FORWARD, tuple(Delivery(d, "default", rule.morph) for d in rule.destinations),
                            ("default",))
        if not deliveries:
            return Decision(Action.DROP, (), tuple(matched))
        return Decision(Action.FORWARD, tuple(deliveries.values()), tuple(matched))


def compile_rules(tables: Sequence[Mapping[str, Any]], default: Any, destinations: Iterable[str]
                  ) -> tuple[RuleSet, list[str]]:
    """Every rule, and every problem found (all of them, so one --check run lists them all)."""
    known = list(destinations)
    errors: list[str] = []
    rules: list[Rule] = []
    names: set[str] = set()
    for i, table in enumerate(tables, 1):
        label = f"rule {i}" + (f" ({table['name']!r})" if isinstance(table, Mapping) and "name" in table else "")
        if not isinstance(table, Mapping):
            errors.append(f"{label}: expected a [[rule]] table")
            continue
        try:
            rule = compile_rule({"name": f"rule-{i}", **table}, label, known)
        except RuleProblems as exc:
            errors += exc.problems
            continue
        if rule.name in names:
            errors.append(f"{label}: another rule is already named {rule.name!r}")
        names.add(rule.name)
        rules.append(rule)
    try:
        default_rule = compile_default(default, known)
    except RuleError as exc:
        errors += exc.problems if isinstance(exc, RuleProblems) else [str(exc)]
        default_rule = Rule("default", (), Action.DROP)
    return RuleSet(tuple(rules), default_rule), errors
