"""Attribute values as matching and the index see them (PS3.4 C.2.2.2, PS3.5 §6.2): padding removed,
person names in canonical form, case and accent folding, and DA/TM/DT values parsed into the inclusive
intervals and fixed-width strings that compare the same in Python and SQLite (see matching.py).
Pure functions."""

from __future__ import annotations

import calendar
import re
import unicodedata
from datetime import date, datetime, time, timedelta
from typing import Any, Final

from pydicom.valuerep import PersonName

SINGLE_VALUED_VRS: Final = frozenset({"LT", "ST", "UT", "UR"})  # a backslash is text there (PS3.5 §6.2)
_RSTRIP_ONLY: Final = SINGLE_VALUED_VRS | {"UC"}  # leading spaces are significant (PS3.5 §6.2)
_DT_MIN, _DT_MAX = datetime.min, datetime.max


# ---- text normalisation ----------------------------------------------------------------------

def clean(vr: str, text: str) -> str:
    """Drop the padding PS3.5 §6.2 declares insignificant for `vr` (NUL pads UIDs)."""
    return text.rstrip(" \0") if vr in _RSTRIP_ONLY else text.strip(" \0")


def normalize_pn(text: str) -> str:
    """Canonical PN: spaces around components and empty trailing components/groups removed."""
    groups = ["^".join(c.strip() for c in g.split("^")).rstrip("^") for g in text.split("=")]
    while groups and not groups[-1]:
        groups.pop()
    return "=".join(groups)


def fold(text: str) -> str:
    """Case and accent folding used by case-insensitive and fuzzy PN matching."""
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c)).casefold()


def _scalar_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    original = getattr(value, "original_string", None)  # pydicom DA/TM/DT/IS keep what was read
    if isinstance(original, str):
        return original
    if isinstance(value, datetime):
        return value.strftime("%Y%m%d%H%M%S.%f") + (value.strftime("%z") if value.tzinfo else "")
    if isinstance(value, date):
        return value.strftime("%Y%m%d")
    if isinstance(value, time):
        return value.strftime("%H%M%S.%f")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("latin-1")
    return str(value)


def candidate_values(vr: str, value: Any) -> tuple[str, ...]:
    """The non-empty values of a candidate attribute as normalised text (PN canonical)."""
    if value is None:
        return ()
    if isinstance(value, (str, PersonName, bytes, bytearray, memoryview)) or not hasattr(value, "__iter__"):
        text = _scalar_text(value)
        parts = [text] if vr in SINGLE_VALUED_VRS else text.split("\\")
    else:
        parts = [_scalar_text(v) for v in value]
    out = [clean(vr, p) for p in parts]
    if vr == "PN":
        out = [normalize_pn(p) for p in out]
    return tuple(p for p in out if p)


# ---- dates and times (PS3.5 §6.2 DA, TM, DT; matched by meaning per C.2.2.2.1) -----------------

DA_RE: Final = re.compile(r"(\d{4})\.?(\d{2})\.?(\d{2})")  # dotted form: ACR-NEMA legacy
TM_RE: Final = re.compile(r"(\d{2})(?::?(\d{2})(?::?(\d{2})(?:\.(\d{1,6}))?)?)?")
DT_RE: Final = re.compile(
    r"(\d{4})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:\.(\d{1,6}))?)?)?)?)?)?([+-]\d{4})?"
)


def parse_da(text: str) -> date | None:
    m = DA_RE.fullmatch(text)
    try:
        return None if m is None else date(int(m[1]), int(m[2]), int(m[3]))
    except ValueError:
        return None


def tm_bounds(text: str) -> tuple[int, int] | None:
    """Inclusive microseconds-of-day covered by a TM value of any precision."""
    m = TM_RE.fullmatch(text)
    if m is None:
        return None
    hh, mm, ss = int(m[1]), int(m[2] or 0), int(m[3] or 0)
    if hh > 23 or mm > 59 or ss > 60:  # 60: leap second, PS3.5 §6.2
        return None
    lo = ((hh * 60 + mm) * 60 + min(ss, 59)) * 1_000_000
    if m[4]:
        lo += int(m[4].ljust(6, "0"))
        span = 10 ** (6 - len(m[4])) - 1
    else:
        span = 999_999 if m[3] else 60_000_000 - 1 if m[2] else 3_600_000_000 - 1
    return lo, lo + span


def parse_offset(text: str) -> timedelta | None:
    """"+HHMM"/"-HHMM" within -12:00..+14:00 (PS3.5 §6.2 DT), else None."""
    if len(text) != 5 or text[0] not in "+-" or not text[1:].isdigit():
        return None
    hh, mm = int(text[1:3]), int(text[3:])
    off = timedelta(hours=hh, minutes=mm) * (-1 if text[0] == "-" else 1)
    return off if mm < 60 and timedelta(hours=-12) <= off <= timedelta(hours=14) else None


def shift(moment: datetime, delta: timedelta) -> datetime:
    try:
        return moment + delta
    except OverflowError:
        return _DT_MAX if delta > timedelta(0) else _DT_MIN


def dt_bounds(text: str, default_offset: timedelta | None, ref: timedelta | None) -> tuple[datetime, datetime] | None:
    """Inclusive moments covered by a DT value, moved into the reference frame when it has an offset."""
    m = DT_RE.fullmatch(text)
    if m is None:
        return None
    y, mo, d, hh, mi, ss, frac, off = m.groups()
    try:
        lo = datetime(int(y), int(mo or 1), int(d or 1), int(hh or 0), int(mi or 0),
                      min(int(ss or 0), 59), int(frac.ljust(6, "0")) if frac else 0)
    except ValueError:
        return None
    if frac:
        hi = shift(lo, timedelta(microseconds=10 ** (6 - len(frac)) - 1))
    elif ss or mi or hh:
        hi = shift(lo, (timedelta(seconds=1) if ss else timedelta(minutes=1) if mi else timedelta(hours=1))
                    - timedelta(microseconds=1))
    elif d:
        hi = datetime.combine(lo.date(), time.max)
    else:
        last_month = int(mo or 12)
        hi = datetime(lo.year, last_month, calendar.monthrange(lo.year, last_month)[1], 23, 59, 59, 999_999)
    offset = default_offset if off is None else parse_offset(off)
    if off is not None and offset is None:
        return None
    if offset is not None:  # C.2.2.2.5: the offset is taken into account
        delta = (ref or timedelta(0)) - offset
        lo, hi = shift(lo, delta), shift(hi, delta)
    return lo, hi


def fmt_tm(us: int) -> str:
    seconds, micro = divmod(us, 1_000_000)
    return f"{seconds // 3600:02d}{seconds // 60 % 60:02d}{seconds % 60:02d}.{micro:06d}"


def fmt_dt(moment: datetime) -> str:
    return f"{moment:%Y%m%d%H%M%S}.{moment.microsecond:06d}"


def normalize_da(text: str) -> str:
    """Candidate DA as `YYYYMMDD`, "" when not a valid date."""
    d = parse_da(text.strip())
    return "" if d is None else f"{d:%Y%m%d}"


def normalize_tm(text: str) -> str:
    """Candidate TM as its first moment `HHMMSS.ffffff`, "" when not a valid time."""
    b = tm_bounds(text.strip())
    return "" if b is None else fmt_tm(b[0])


def normalize_dt(text: str, ref: timedelta | None = None) -> str:
    """Candidate DT as its first moment `YYYYMMDDHHMMSS.ffffff`; a value with an offset is moved into
    the reference frame `ref` (UTC when None), one without is taken as already in it."""
    b = dt_bounds(text.strip(), None, ref)
    return "" if b is None else fmt_dt(b[0])
