"""Counting what a load run did: latency histograms, throughput, errors by kind, statuses.

Recording is O(1) and allocation-free: a latency goes into a log-linear bucket (64 sub-buckets per
power of two of microseconds, ≤ 1.6 % error, the HdrHistogram layout), so millions of operations
cost a fixed ~2,200-slot list, and percentiles are read from the buckets at any moment.
"""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Final

from ..dimse import status as st
from ..net.errors import (
    AssociationAborted,
    AssociationError,
    AssociationRejected,
    AssociationTimeout,
    ConnectionFailed,
    NoPresentationContext,
)

_SUB_BITS: Final = 6
_SUB: Final = 1 << _SUB_BITS  # sub-buckets per octave
_LINEAR: Final = 2 * _SUB  # below this many microseconds every value has its own bucket
_BUCKETS: Final = _LINEAR + 40 * _SUB  # up to 2**41 µs (25 days): nothing a run can exceed


def _index(us: int) -> int:
    if us < _LINEAR:
        return max(us, 0)
    shift = us.bit_length() - _SUB_BITS - 1
    return _LINEAR + (shift - 1) * _SUB + ((us >> shift) - _SUB)


def _bounds(index: int) -> tuple[int, int]:
    """The smallest and largest microsecond value of a bucket."""
    if index < _LINEAR:
        return index, index
    shift = (index - _LINEAR) // _SUB + 1
    m = (index - _LINEAR) % _SUB + _SUB
    return m << shift, ((m + 1) << shift) - 1


class Histogram:
    """Latencies in seconds, kept in microsecond buckets; exact count, min, max and sum."""

    __slots__ = ("_counts", "count", "total", "min", "max")

    def __init__(self) -> None:
        self._counts = [0] * _BUCKETS
        self.count = 0
        self.total = 0.0
        self.min = float("inf")
        self.max = 0.0

    def record(self, seconds: float) -> None:
        us = int(seconds * 1_000_000)
        self._counts[_index(us) if us < (1 << 41) else _BUCKETS - 1] += 1
        self.count += 1
        self.total += seconds
        self.max = max(self.max, seconds)
        self.min = min(self.min, seconds)

    def merge(self, other: Histogram) -> None:
        self._counts = [a + b for a, b in zip(self._counts, other._counts)]
        self.count += other.count
        self.total += other.total
        self.max = max(self.max, other.max)
        self.min = min(self.min, other.min)

    def percentile(self, q: float) -> float:
        """The nearest-rank q-th percentile (0 < q ≤ 100) in seconds: the middle of its bucket,
        clamped to the exact min and max; 0.0 when empty."""
        if self.count == 0:
            return 0.0
        rank = max(1, -(-int(q * self.count * 1000) // 100_000))  # ceil(q/100 * count) in integers
        seen = 0
        for i, n in enumerate(self._counts):
            if n:
                seen += n
                if seen >= rank:
                    low, high = _bounds(i)
                    value = (low + high) / 2 / 1_000_000
                    return min(max(value, self.min), self.max)
        return self.max

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0

    def summary_ms(self) -> dict[str, float]:
        """p50/p95/p99/max/mean/min in milliseconds, rounded to microseconds."""
        def r(s: float) -> float:
            return round(s * 1000, 3)

        return {"p50": r(self.percentile(50)), "p95": r(self.percentile(95)), "p99": r(self.percentile(99)),
                "max": r(self.max), "mean": r(self.mean), "min": r(self.min if self.count else 0.0)}


class ErrorKind(enum.StrEnum):
    """Why an operation did not get a non-failure status."""

    REFUSED = "refused"  # no transport: connection refused, unreachable, connect timed out
    REJECTED = "rejected"  # A-ASSOCIATE-RJ, or no accepted presentation context for the operation
    ABORTED = "aborted"  # A-ABORT or the connection dropped mid-association
    TIMEOUT = "timeout"  # ACSE or DIMSE deadline passed
    FAILURE_STATUS = "failure status"  # the peer answered a Failure (or Cancel) status
    OTHER = "other"  # anything else: a bug on one side, reported with its message


def classify(exc: BaseException) -> ErrorKind:
    if isinstance(exc, ConnectionFailed):
        return ErrorKind.REFUSED
    if isinstance(exc, (AssociationRejected, NoPresentationContext)):
        return ErrorKind.REJECTED
    if isinstance(exc, (AssociationTimeout, TimeoutError)):
        return ErrorKind.TIMEOUT
    if isinstance(exc, (AssociationAborted, AssociationError, OSError)):
        return ErrorKind.ABORTED
    return ErrorKind.OTHER


def is_failure(code: int) -> bool:
    return st.category(code) in (st.Category.FAILURE, st.Category.CANCEL)


@dataclass(slots=True)
class OpStats:
    """One operation type (or all of them): outcomes, volume and latency."""

    ok: int = 0  # Success or Warning
    warnings: int = 0
    bytes: int = 0  # data set bytes sent (C-STORE) or received (C-FIND matches)
    matches: int = 0  # C-FIND Pending responses
    errors: Counter[ErrorKind] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    latency: Histogram = field(default_factory=Histogram)

    @property
    def done(self) -> int:
        return self.ok + sum(self.errors.values())

    @property
    def failed(self) -> int:
        return sum(self.errors.values())


class Recorder:
    """Everything a run counts, per operation and in total; read by the progress line while it runs."""

    MAX_EXAMPLES: Final = 5

    def __init__(self, operations: tuple[str, ...]) -> None:
        self.total = OpStats()
        self.by_op = {name: OpStats() for name in operations}
        self.associations = OpStats()  # establishment: ok, errors by kind, time to accept
        self.error_examples: dict[str, int] = {}

    def status(self, op: str, code: int, latency: float, nbytes: int = 0, matches: int = 0) -> None:
        for s in (self.total, self.by_op[op]):
            s.statuses[code] += 1
            s.latency.record(latency)
            if is_failure(code):
                s.errors[ErrorKind.FAILURE_STATUS] += 1
            else:
                s.ok += 1
                s.bytes += nbytes
                s.matches += matches
                if st.category(code) is st.Category.WARNING:
                    s.warnings += 1
        if is_failure(code):
            self.example(f"{op}: {st.describe(code)}")

    def error(self, op: str, exc: BaseException, latency: float) -> ErrorKind:
        kind = classify(exc)
        for s in (self.total, self.by_op[op]):
            s.errors[kind] += 1
            s.latency.record(latency)
        self.example(f"{op}: {kind}: {exc or type(exc).__name__}")
        return kind

    def associated(self, latency: float) -> None:
        self.associations.ok += 1
        self.associations.latency.record(latency)

    def association_failed(self, exc: BaseException, latency: float) -> ErrorKind:
        kind = classify(exc)
        self.associations.errors[kind] += 1
        self.associations.latency.record(latency)
        self.example(f"associate: {kind}: {exc or type(exc).__name__}")
        return kind

    def example(self, text: str) -> None:
        if text in self.error_examples or len(self.error_examples) < self.MAX_EXAMPLES:
            self.error_examples[text] = self.error_examples.get(text, 0) + 1


def error_counts(s: OpStats) -> dict[str, int]:
    return {kind.value: s.errors.get(kind, 0) for kind in ErrorKind}


def op_summary(s: OpStats, elapsed: float) -> dict[str, Any]:
    elapsed = max(elapsed, 1e-9)
    return {
        "operations": s.done,
        "ok": s.ok,
        "warnings": s.warnings,
        "errors": s.failed,
        "ops_per_s": round(s.done / elapsed, 2),
        "ok_per_s": round(s.ok / elapsed, 2),
        "bytes": s.bytes,
        "mb_per_s": round(s.bytes / elapsed / 1e6, 3),
        "matches": s.matches,
        "latency_ms": s.latency.summary_ms(),
        "errors_by_kind": error_counts(s),
        "statuses": {f"0x{code:04X}": n for code, n in sorted(s.statuses.items())},
    }
