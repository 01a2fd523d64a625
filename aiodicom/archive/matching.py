"""Attribute matching for C-FIND and Modality Worklist (PS3.4 C.2.2.2, reused by K.2.2.1).

`compile_query(identifier)` turns every key of a request identifier into a matcher once; the
compiled `Query` then tests candidates (`Query.matches`) and builds responses holding exactly the
requested keys (`Query.response`, see response.py). Pure functions: no I/O, no clock.

Matching types (PS3.4 C.2.2.2.1-.8): single value, list of UID, universal (empty key, or "*"),
wild card (`*`, `?`), range (DA, TM, DT; combined DA+TM when negotiated), sequence, empty value
(`""` matches only zero-length attributes) and, when negotiated, multiple value matching.

Text is compared after removing the padding PS3.5 §6.2 calls insignificant. Dates and times are
matched by meaning (C.2.2.2.1 note): every DA/TM/DT key becomes inclusive intervals of fixed-width
strings (DA `YYYYMMDD`, TM `HHMMSS.ffffff`, DT `YYYYMMDDHHMMSS.ffffff`) whose ends cover the
precision given (TM "07" = 07:00:00.000000-07:59:59.999999); a candidate is its lowest moment.
Fixed-width strings compare the same in Python and SQLite, which is what makes push-down exact.

Person names (PN): groups (alphabetic=ideographic=phonetic) are compared group by group: a key
without "=" matches when it matches any group of the candidate. Options:
- case_insensitive_pn: case and accent folding (casefold of NFKD without combining marks), which
  C.2.2.2.1 allows for PN ("insensitive to some or all aspects of case, position, accent").
- fuzzy_pn (fuzzy semantic matching): folding as above, each key component (family^given^...)
  matches the candidate's component at the same position as a prefix ("SMI^JO" finds
  "Smith^John"); a key of a single component matches a prefix of any component ("joh" finds it too).

Push-down: every matcher renders an SQL condition for an index column (`to_sql`), flagged exact
when the SQL selects precisely the rows the Python matcher accepts, or inexact when it is only a
necessary condition (the caller re-checks in Python); None when it cannot be rendered.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any, Final

from pydicom import Dataset
from pydicom.charset import TEXT_VR_DELIMS, convert_encodings, decode_bytes
from pydicom.datadict import dictionary_VR, keyword_for_tag

from aiodicom.archive.values import (
    DT_RE,
    SINGLE_VALUED_VRS,
    candidate_values,
    clean,
    dt_bounds,
    fmt_dt,
    fmt_tm,
    fold,
    normalize_da,
    normalize_dt,
    normalize_pn,
    normalize_tm,
    parse_da,
    parse_offset,
    shift,
    tm_bounds,
)
from aiodicom.dimse.vrs import CHARSET_VRS

Candidate = Mapping[Any, Any] | Dataset

WILDCARD_VRS: Final = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"})  # C.2.2.2.4
NUMERIC_VRS: Final = frozenset({"IS", "DS", "US", "SS", "UL", "SL", "UV", "SV", "FL", "FD"})
DATETIME_VRS: Final = frozenset({"DA", "TM", "DT"})
_MULTI_VALUE_VRS: Final = frozenset({"AE", "AS", "AT", "CS", "LO", "PN", "SH", "UC"})  # C.2.2.2.8
_NOT_KEYS: Final = frozenset({0x00080005, 0x00080052})  # Specific Character Set, Q/R Level: never matched
_TIMEZONE_TAG: Final = 0x00080201  # Timezone Offset From UTC: interprets DA/TM/DT keys (C.2.2.2.5)
_DAY_US: Final = 86_400_000_000


class QueryError(ValueError):
    """A key value the matching rules cannot interpret; the SCP answers 0xA900 or 0xC000."""

    def __init__(self, keyword: str, value: str, reason: str) -> None:
        super().__init__(f"{keyword}={value!r}: {reason}")
        self.keyword = keyword


# ---- SQL push-down ---------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class SqlColumn:
    """How an index exposes one attribute to SQL.

    expr: expression of the normalised value ("" when empty; NULL for numeric when empty).
    folded: expression of `fold()` of the PN value, for case-insensitive and fuzzy PN.
    numeric: stored as INTEGER/REAL. multi_valued: values joined with backslashes.
    exists: for a value computed over child rows, an `EXISTS (... AND {cond})` template in which
    `expr` names the child column; a key then matches when any child row satisfies it.
    """

    expr: str
    folded: str | None = None
    numeric: bool = False
    multi_valued: bool = False
    exists: str | None = None


@dataclass(frozen=True, slots=True)
class SqlFilter:
    sql: str
    params: tuple[Any, ...]
    exact: bool  # False: a necessary condition only, re-check the key in Python


def _glob(pattern: str, one: str = "?") -> str:
    """A DICOM wild card pattern as SQLite GLOB: "[" escaped, "?" rendered as `one`."""
    return pattern.replace("[", "[[]").replace("?", one)


def _in(expr: str, values: tuple[Any, ...]) -> tuple[str, tuple[Any, ...]]:
    if len(values) == 1:
        return f"{expr} = ?", values
    return f"{expr} IN ({', '.join('?' * len(values))})", values


def _pieces(pattern: str, separators: str) -> list[str]:
    return [p for p in re.split(f"[{re.escape(separators)}]", pattern) if p]


def _substrings(expr: str, pieces: list[str]) -> SqlFilter | None:
    if not pieces:
        return None
    return SqlFilter(" AND ".join(f"instr({expr}, ?) > 0" for _ in pieces), tuple(pieces), exact=False)


def _within(col: SqlColumn, sql: str, params: tuple[Any, ...], exact: bool = True) -> SqlFilter | None:
    """Apply a per-value condition to a column, through its EXISTS template when computed."""
    if col.exists:
        return SqlFilter(col.exists.format(cond=sql), params, exact)
    return None if col.multi_valued else SqlFilter(sql, params, exact)


def _any(filters: list[SqlFilter | None]) -> SqlFilter | None:
    if not filters or any(f is None for f in filters):
        return None
    fs = [f for f in filters if f is not None]
    if len(fs) == 1:
        return fs[0]
    return SqlFilter("(" + " OR ".join(f"({f.sql})" for f in fs) + ")",
                     tuple(p for f in fs for p in f.params), all(f.exact for f in fs))


# ---- matchers --------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Key:
    tag: int
    keyword: str
    vr: str

    def get(self, candidate: Candidate) -> Any:
        if isinstance(candidate, Dataset):
            elem = candidate.get(self.tag)
            return None if elem is None else elem.value
        value = candidate.get(self.keyword)
        return candidate.get(self.tag) if value is None else value


class Matcher:
    """One non-universal key. Subclasses define `test(values)` on normalised candidate values."""

    __slots__ = ()
    key: Key

    @property
    def keywords(self) -> tuple[str, ...]:
        return (self.key.keyword,)

    def matches(self, candidate: Candidate) -> bool:
        return self.test(candidate_values(self.key.vr, self.key.get(candidate)))

    def test(self, values: tuple[str, ...]) -> bool:
        raise NotImplementedError

    def to_sql(self, *columns: SqlColumn) -> SqlFilter | None:
        return None


@dataclass(frozen=True, slots=True)
class EmptyValueMatcher(Matcher):
    """Key `""`: only entities whose attribute is zero length or absent match (C.2.2.2.1)."""

    key: Key

    def test(self, values: tuple[str, ...]) -> bool:
        return not values

    def to_sql(self, col: SqlColumn) -> SqlFilter:  # type: ignore[override]
        if col.exists:
            return SqlFilter("NOT " + col.exists.format(cond=f"{col.expr} != ''"), (), True)
        return SqlFilter(f"{col.expr} IS NULL" if col.numeric else f"{col.expr} = ''", (), True)


@dataclass(frozen=True, slots=True)
class ValueMatcher(Matcher):
    """Single value (C.2.2.2.1), list of UID (C.2.2.2.2) or a value list for other VRs: any value
    matches; with `require_all` every value must be present (Multiple Value Matching, C.2.2.2.8)."""

    key: Key
    values: tuple[str, ...]
    require_all: bool = False

    def test(self, values: tuple[str, ...]) -> bool:
        if self.require_all:
            return set(self.values) <= set(values)
        return any(v in self.values for v in values)

    def to_sql(self, col: SqlColumn) -> SqlFilter | None:  # type: ignore[override]
        if col.multi_valued and not col.exists:  # values can hold no backslash: delimit and search
            conds = [(f"instr('\\' || {col.expr} || '\\', ?) > 0", (f"\\{v}\\",)) for v in self.values]
        elif self.require_all:
            conds = [(f"{col.expr} = ?", (v,)) for v in self.values]
        else:
            return _within(col, *_in(col.expr, self.values))
        joiner = " AND " if self.require_all else " OR "
        if col.exists:
            conds = [(col.exists.format(cond=sql), params) for sql, params in conds]
        return SqlFilter("(" + joiner.join(c for c, _ in conds) + ")", tuple(p for _, ps in conds for p in ps), True)


@functools.lru_cache(maxsize=4096)
def _wildcard_regex(patterns: tuple[str, ...], tail: str = "") -> re.Pattern[str]:
    alts = ("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in p) + tail for p in patterns)
    return re.compile("|".join(f"(?:{a})" for a in alts), re.DOTALL)


@dataclass(frozen=True, slots=True)
class WildcardMatcher(Matcher):
    """Wild card matching (C.2.2.2.4): "*" any sequence, "?" one character, case sensitive."""

    key: Key
    patterns: tuple[str, ...]

    def test(self, values: tuple[str, ...]) -> bool:
        rx = _wildcard_regex(self.patterns)
        return any(rx.fullmatch(v) for v in values)

    def to_sql(self, col: SqlColumn) -> SqlFilter | None:  # type: ignore[override]
        if col.multi_valued and not col.exists:
            return _any([
                SqlFilter(f"('\\' || {col.expr} || '\\') GLOB ?", ("*\\" + _glob(p, "[^\\]") + "\\*",), True)
                if "*" not in p else _substrings(col.expr, _pieces(p, "*?"))
                for p in self.patterns
            ])
        f = _any([SqlFilter(f"{col.expr} GLOB ?", (_glob(p),), True) for p in self.patterns])
        return None if f is None else _within(col, f.sql, f.params)


@dataclass(frozen=True, slots=True)
class PersonNameMatcher(Matcher):
    """PN keys (C.2.2.2.1, C.2.2.2.4); `mode` is "exact", "folded" or "fuzzy" (see module doc)."""

    key: Key
    patterns: tuple[str, ...]  # canonical PN, folded unless mode == "exact"
    mode: str = "exact"

    def test(self, values: tuple[str, ...]) -> bool:
        return any(self._match(p, fold(v) if self.mode != "exact" else v) for p in self.patterns for v in values)

    def _match(self, pattern: str, value: str) -> bool:
        q_groups, c_groups = pattern.split("="), value.split("=")
        if len(q_groups) == 1:
            return any(self._group(q_groups[0], g) for g in c_groups)
        return all(not q or (i < len(c_groups) and self._group(q, c_groups[i])) for i, q in enumerate(q_groups))

    def _group(self, q: str, g: str) -> bool:
        if self.mode != "fuzzy":
            return bool(_wildcard_regex((q,)).fullmatch(g))
        qc, cc = q.split("^"), g.split("^")
        if len(qc) == 1:
            return any(c and _wildcard_regex((q,), ".*").fullmatch(c) for c in cc)
        return all(not p or (i < len(cc) and _wildcard_regex((p,), ".*").fullmatch(cc[i])) for i, p in enumerate(qc))

    def to_sql(self, col: SqlColumn) -> SqlFilter | None:  # type: ignore[override]
        expr = col.expr if self.mode == "exact" else col.folded
        if expr is None or col.exists or col.multi_valued:
            return None
        filters: list[SqlFilter | None] = []
        for p in self.patterns:
            if self.mode != "fuzzy" and "=" not in p and len(p) > 1 and p.find("*") == len(p) - 1:
                # "LIT*": a group starts with LIT ⇔ the value does (first group) or "=LIT" occurs in it
                lit = _glob(p[:-1], "[^=]")
                filters.append(SqlFilter(f"({expr} GLOB ? OR {expr} GLOB ?)", (lit + "*", "*=" + lit + "*"), True))
            elif self.mode == "fuzzy" or "=" in p or "*" in p:
                filters.append(_substrings(expr, _pieces(p, "*?=^" if self.mode == "fuzzy" else "*?=")))
            elif "?" in p:  # "?" cannot cross a group: exact
                filters.append(SqlFilter(f"('=' || {expr} || '=') GLOB ?", ("*=" + _glob(p, "[^=]") + "=*",), True))
            else:
                filters.append(SqlFilter(f"instr('=' || {expr} || '=', ?) > 0", (f"={p}=",), True))
        return _any(filters)


def _number(vr: str, text: str) -> int | float | None:
    try:
        return float(text) if vr in ("DS", "FL", "FD") else int(text)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class NumberMatcher(Matcher):
    """Single value / value list on numeric VRs, compared by value ("05" matches 5)."""

    key: Key
    numbers: tuple[int | float, ...]
    require_all: bool = False

    def test(self, values: tuple[str, ...]) -> bool:
        have = {n for n in (_number(self.key.vr, v) for v in values) if n is not None}
        return set(self.numbers) <= have if self.require_all else any(n in have for n in self.numbers)

    def to_sql(self, col: SqlColumn) -> SqlFilter | None:  # type: ignore[override]
        if not col.numeric or col.multi_valued or col.exists or (self.require_all and len(set(self.numbers)) > 1):
            return None
        return SqlFilter(*_in(col.expr, self.numbers[:1] if self.require_all else self.numbers), True)


def _normalizer(vr: str, ref: timedelta | None):
    if vr == "DA":
        return normalize_da
    if vr == "TM":
        return normalize_tm
    return lambda text: normalize_dt(text, ref)


def _interval_sql(expr: str, lo: str | None, hi: str | None) -> tuple[str, tuple[str, ...]]:
    if lo is not None and hi is not None:
        return f"{expr} BETWEEN ? AND ?", (lo, hi)
    if lo is not None:
        return f"{expr} >= ?", (lo,)
    if hi is not None:
        return f"({expr} != '' AND {expr} <= ?)", (hi,)
    return f"{expr} != ''", ()


@dataclass(frozen=True, slots=True)
class RangeMatcher(Matcher):
    """DA/TM/DT keys, single values included (they match by meaning): inclusive intervals of
    normalised strings, open ends as None (C.2.2.2.5)."""

    key: Key
    intervals: tuple[tuple[str | None, str | None], ...]
    ref: timedelta | None = None  # reference frame of DT values with offsets (None: UTC)

    def test(self, values: tuple[str, ...]) -> bool:
        norm = _normalizer(self.key.vr, self.ref)
        for v in values:
            n = norm(v)
            if n and any((lo is None or n >= lo) and (hi is None or n <= hi) for lo, hi in self.intervals):
                return True
        return False

    def to_sql(self, col: SqlColumn) -> SqlFilter | None:  # type: ignore[override]
        f = _any([SqlFilter(*_interval_sql(col.expr, lo, hi), True) for lo, hi in self.intervals])
        return None if f is None or col.numeric else _within(col, f.sql, f.params)


@dataclass(frozen=True, slots=True)
class CombinedDateTimeMatcher(Matcher):
    """A DA key and its TM partner with the same form of range, matched as one DT range when combined
    date-time matching was negotiated (C.2.2.2.5). A candidate with a date but no time matches when
    its day lies within the dates of the range."""

    key: Key  # the DA key
    time_key: Key
    lo: str | None  # DT form YYYYMMDDHHMMSS.ffffff
    hi: str | None

    @property
    def keywords(self) -> tuple[str, ...]:
        return (self.key.keyword, self.time_key.keyword)

    def matches(self, candidate: Candidate) -> bool:
        dates = [d for d in map(normalize_da, candidate_values("DA", self.key.get(candidate))) if d]
        if not dates:
            return False
        times = [t for t in map(normalize_tm, candidate_values("TM", self.time_key.get(candidate))) if t]
        lo, hi = self.lo, self.hi
        if not times:
            return (lo is None or dates[0] >= lo[:8]) and (hi is None or dates[0] <= hi[:8])
        point = dates[0] + times[0]
        return (lo is None or point >= lo) and (hi is None or point <= hi)

    def test(self, values: tuple[str, ...]) -> bool:  # pragma: no cover - matches() is overridden
        raise TypeError("combined date-time matching needs both attributes")

    def to_sql(self, date_col: SqlColumn, time_col: SqlColumn) -> SqlFilter | None:  # type: ignore[override]
        if any(c.numeric or c.multi_valued or c.exists for c in (date_col, time_col)):
            return None
        d, t = date_col.expr, time_col.expr
        day_sql, day_params = _interval_sql(d, self.lo and self.lo[:8], self.hi and self.hi[:8])
        at_sql, at_params = _interval_sql(f"({d} || {t})", self.lo, self.hi)
        return SqlFilter(f"({d} != '' AND (({t} = '' AND {day_sql}) OR ({t} != '' AND {at_sql})))",
                         day_params + at_params, True)


@dataclass(frozen=True, slots=True)
class SequenceMatcher(Matcher):
    """Sequence matching (C.2.2.2.6): some item of the candidate's sequence matches every item key."""

    key: Key
    item: Query

    def matches(self, candidate: Candidate) -> bool:
        items = self.key.get(candidate) or ()
        return any(self.item.matches(it) for it in items)

    def test(self, values: tuple[str, ...]) -> bool:  # pragma: no cover - matches() is overridden
        raise TypeError("sequence matching needs the items")


# ---- compiled query --------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ReturnKey:
    """A requested attribute; for a sequence, `item` holds the requested item keys (None: all)."""

    key: Key
    item: Query | None = None


@dataclass(frozen=True, slots=True)
class Query:
    """A compiled identifier: test candidates with `matches`, answer with `response`."""

    matchers: tuple[Matcher, ...]  # universal keys are not here: they match everything
    return_keys: tuple[ReturnKey, ...]  # every key but Specific Character Set and Q/R Level
    level: str = ""  # Query/Retrieve Level (0008,0052), upper case, "" when absent

    @property
    def keywords(self) -> frozenset[str]:
        return frozenset(rk.key.keyword for rk in self.return_keys)

    def matches(self, candidate: Candidate) -> bool:
        return all(m.matches(candidate) for m in self.matchers)

    def response(self, candidate: Candidate) -> Dataset:
        """A response identifier holding exactly the requested keys, sequences reduced to their
        matching items with only the requested item keys (C.2.2.2.6)."""
        # the builder lives with the direct encoder (response.py), which imports this module
        from .response import response_dataset

        return response_dataset(self, candidate)


def _key_text(identifier: Dataset, tag: int, vr: str, encodings: list[str]) -> str | None:
    """A key's value as text before pydicom's conversion (which rejects "" and ranges for IS, DA...)."""
    if vr in ("OB", "OW", "OF", "OD", "OL", "OV", "UN", "AT"):
        return None  # binary: no matching defined, a return key only
    value = identifier.get_item(tag).value
    if value is None:
        return ""
    if isinstance(value, (bytes, bytearray)):
        if vr in CHARSET_VRS:
            return decode_bytes(bytes(value), encodings, TEXT_VR_DELIMS | {0x5C, 0x5E, 0x3D})
        return bytes(value).decode("latin-1")
    return "\\".join(candidate_values(vr, value)) if not isinstance(value, str) else value


def _range_parts(vr: str, text: str) -> tuple[str, str] | None:
    """Split "a-b" / "-b" / "a-" (None: a single value). DT offsets may hold "-" too, so a DT value
    that parses whole is single; otherwise the first split whose halves both parse wins."""
    if vr != "DT":
        if text.count("-") > 1:
            raise ValueError("more than one '-'")
        return tuple(text.split("-")) if "-" in text else None  # type: ignore[return-value]
    if DT_RE.fullmatch(text) and (len(text) < 5 or text[-5] not in "+-" or parse_offset(text[-5:]) is not None):
        return None
    for i, c in enumerate(text):
        if c == "-":
            a, b = text[:i], text[i + 1:]
            if all(not p or dt_bounds(p, None, None) for p in (a, b)):
                return a, b
    raise ValueError("not a DT value or range")


@dataclass(frozen=True, slots=True)
class _Frame:
    """How DA/TM/DT keys are interpreted: the query's timezone and the archive's (C.2.2.2.5)."""

    query_offset: timedelta | None
    ref: timedelta | None

    @property
    def delta(self) -> timedelta:
        if self.query_offset is None or self.ref is None:
            return timedelta(0)
        return self.ref - self.query_offset


def _bounds(vr: str, text: str, frame: _Frame) -> tuple[Any, Any]:
    if vr == "DA":
        d = parse_da(text)
        if d is None:
            raise ValueError("not a DA value")
        return d, d
    if vr == "TM":
        b = tm_bounds(text)
        if b is None:
            raise ValueError("not a TM value")
        return b
    b2 = dt_bounds(text, frame.query_offset if frame.ref is not None else None, frame.ref)
    if b2 is None:
        raise ValueError("not a DT value")
    return b2


def _intervals(vr: str, text: str, frame: _Frame) -> list[tuple[str | None, str | None]]:
    parts = _range_parts(vr, text)
    a, b = (text, text) if parts is None else parts
    lo = _bounds(vr, a, frame)[0] if a else None
    hi = _bounds(vr, b, frame)[1] if b else None
    delta = frame.delta
    if vr == "DT":
        return [(None if lo is None else fmt_dt(lo), None if hi is None else fmt_dt(hi))]
    if vr == "DA":  # a day of the query's timezone may span two days of the archive's: widen
        lo_d: date | None = lo if lo is None or not delta else shift(datetime.combine(lo, time.min), delta).date()
        hi_d: date | None = hi if hi is None or not delta else shift(datetime.combine(hi, time.max), delta).date()
        return [(None if lo_d is None else f"{lo_d:%Y%m%d}", None if hi_d is None else f"{hi_d:%Y%m%d}")]
    lo_us = 0 if lo is None else lo  # TM: "prior"/"subsequent" stop at midnight (C.2.2.2.5)
    hi_us = _DAY_US - 1 if hi is None else hi
    moved = int(delta / timedelta(microseconds=1))
    if moved and hi_us - lo_us < _DAY_US - 1 and lo_us <= hi_us:
        lo_us, hi_us = (lo_us + moved) % _DAY_US, (hi_us + moved) % _DAY_US
        if lo_us > hi_us:  # wrapped past midnight once moved into the archive's timezone
            return [(fmt_tm(lo_us), fmt_tm(_DAY_US - 1)), (fmt_tm(0), fmt_tm(hi_us))]
    return [(fmt_tm(lo_us), fmt_tm(hi_us))]


def _combined(date_key: Key, date_text: str, time_key: Key, time_text: str, frame: _Frame) -> Matcher | None:
    """The DA+TM pair as one DT range when both are ranges of the same form (C.2.2.2.5)."""
    if "\\" in date_text or "\\" in time_text or date_text.count("-") != 1 or time_text.count("-") != 1:
        return None
    d1, d2 = date_text.split("-")
    t1, t2 = time_text.split("-")
    if (bool(d1), bool(d2)) != (bool(t1), bool(t2)):
        return None
    da1, da2 = (parse_da(d) if d else None for d in (d1, d2))
    tm1, tm2 = (tm_bounds(t) if t else None for t in (t1, t2))
    if (d1 and not (da1 and tm1)) or (d2 and not (da2 and tm2)):
        return None  # let the separate keys report the error
    lo = hi = None
    if da1 and tm1:
        lo = fmt_dt(shift(datetime.combine(da1, time.min) + timedelta(microseconds=tm1[0]), frame.delta))
    if da2 and tm2:
        hi = fmt_dt(shift(datetime.combine(da2, time.min) + timedelta(microseconds=tm2[1]), frame.delta))
    return CombinedDateTimeMatcher(date_key, time_key, lo, hi)


@dataclass(frozen=True, slots=True)
class _Options:
    case_insensitive_pn: bool
    fuzzy_pn: bool
    combined_datetime: bool
    ref: timedelta | None
    multiple_value_matching: bool


def _matcher(key: Key, text: str, opts: _Options, frame: _Frame) -> Matcher | None:
    vr = key.vr
    value = clean(vr, text)
    if not value or set(value) == {"*"}:
        return None  # universal matching (C.2.2.2.3); "*" is equivalent (C.2.2.2.4)
    if value == '""':
        return EmptyValueMatcher(key)
    parts = (value,) if vr in SINGLE_VALUED_VRS else (clean(vr, s) for s in value.split("\\"))
    values = tuple(dict.fromkeys(v for v in parts if v))
    if not values or any(set(v) == {"*"} for v in values):
        return None  # only separators, or a listed "*": nothing is excluded
    require_all = opts.multiple_value_matching and vr in _MULTI_VALUE_VRS and len(values) > 1
    if vr in DATETIME_VRS:
        return RangeMatcher(key, tuple(i for v in values for i in _intervals(vr, v, frame)), opts.ref)
    if vr in NUMERIC_VRS:
        numbers = tuple(_number(vr, v) for v in values)
        if any(n is None for n in numbers):
            raise ValueError(f"not a number for {vr}")
        return NumberMatcher(key, numbers, require_all)  # type: ignore[arg-type]
    if vr == "PN":
        mode = "fuzzy" if opts.fuzzy_pn else "folded" if opts.case_insensitive_pn else "exact"
        # a key naming groups ("A*=" or "=B*") keeps its "=": each group then matches its own
        pats = tuple("=".join(map(normalize_pn, v.split("="))) if "=" in v else normalize_pn(v) for v in values)
        if any(not p.replace("=", "") for p in pats):
            return None  # "^", "=" ...: only delimiters, no name to match
        return PersonNameMatcher(key, tuple(fold(p) for p in pats) if mode != "exact" else pats, mode)
    if vr in WILDCARD_VRS and any("*" in v or "?" in v for v in values):
        return WildcardMatcher(key, values)  # multiple value keys carry no wild cards (C.2.2.2.8)
    return ValueMatcher(key, values, require_all)


def _as_offset(value: timedelta | str | None) -> timedelta | None:
    if value is None or isinstance(value, timedelta):
        return value
    off = parse_offset(value)
    if off is None:
        raise ValueError(f"timezone_adjust {value!r} is not +HHMM/-HHMM")
    return off


def compile_query(
    identifier: Dataset,
    *,
    case_insensitive_pn: bool = False,
    fuzzy_pn: bool = False,
    combined_datetime: bool = False,
    timezone_adjust: timedelta | str | None = None,
    multiple_value_matching: bool = False,
) -> Query:
    """Compile a C-FIND / worklist identifier.

    The flags mirror what extended negotiation granted (PS3.4 C.5.1.1.2, K.4.1.1.2): case-insensitive
    or fuzzy semantic PN matching, combined date-time matching, multiple value matching.
    `timezone_adjust` is the archive's own UTC offset (timezone query adjustment): when set and
    the identifier carries Timezone Offset From UTC, date/time keys are moved into the archive's
    timezone before matching, and DT values with offsets are compared in it (UTC otherwise).
    Raises QueryError for a key value that is not a valid value, range or list for its VR.
    """
    opts = _Options(case_insensitive_pn, fuzzy_pn, combined_datetime, _as_offset(timezone_adjust),
                    multiple_value_matching)
    return _compile(identifier, opts, ["iso8859"], None)


def _compile(identifier: Dataset, opts: _Options, encodings: list[str], query_offset: timedelta | None) -> Query:
    charset = identifier.get("SpecificCharacterSet")  # items inherit the enclosing one (PS3.5 §6.1.2.5)
    if charset:
        encodings = convert_encodings(charset)
    if identifier.get_item(_TIMEZONE_TAG) is not None:
        query_offset = parse_offset(clean("SH", _key_text(identifier, _TIMEZONE_TAG, "SH", encodings) or ""))
    frame = _Frame(query_offset, opts.ref)

    keys: list[tuple[Key, str | None]] = []
    level = ""
    for tag in sorted(identifier.keys()):
        if tag & 0xFFFF == 0:  # group length: not a key
            continue
        raw = identifier.get_item(tag)
        try:
            vr = raw.VR or dictionary_VR(tag)
        except KeyError:
            vr = "UN"
        if tag == 0x00080052:
            level = clean("CS", _key_text(identifier, tag, "CS", encodings) or "").upper()
        if tag in _NOT_KEYS:
            continue
        key = Key(int(tag), keyword_for_tag(tag) or f"{int(tag):08X}", str(vr).split(" ")[0])
        keys.append((key, None if key.vr == "SQ" else _key_text(identifier, tag, key.vr, encodings)))

    matchers: list[Matcher] = []
    combined: set[str] = set()
    if opts.combined_datetime:
        texts = {k.keyword: (k, t) for k, t in keys}
        for key, text in keys:
            partner = texts.get(key.keyword[:-4] + "Time") if key.keyword.endswith("Date") else None
            if key.vr == "DA" and text and partner and partner[0].vr == "TM" and partner[1]:
                m = _combined(key, clean("DA", text), partner[0], clean("TM", partner[1]), frame)
                if m is not None:
                    matchers.append(m)
                    combined.update(m.keywords)

    return_keys: list[ReturnKey] = []
    for key, text in keys:
        item: Query | None = None
        if key.vr == "SQ":
            seq = identifier[key.tag].value or ()
            if seq and len(seq[0]):  # an empty sequence or item is universal (C.2.2.2.6)
                item = _compile(seq[0], opts, encodings, query_offset)
                if item.matchers:
                    matchers.append(SequenceMatcher(key, item))
        elif text is not None and key.keyword not in combined and key.tag != _TIMEZONE_TAG:
            try:
                m2 = _matcher(key, text, opts, frame)
            except ValueError as exc:
                raise QueryError(key.keyword, text, str(exc)) from None
            if m2 is not None:
                matchers.append(m2)
        return_keys.append(ReturnKey(key, item))
    return Query(tuple(matchers), tuple(return_keys), level)
