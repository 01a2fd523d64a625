"""The bench's target verdicts: a ratio of medians is not trusted when the page cache states differed."""

from __future__ import annotations

from bench.core import Measure, Ratio, _like_for_like

COLD, WARM = 400.0, 4800.0  # MB/s, as bench/pagecache.py measures them on this VM


def measure(target: str, values: list[float], probes: list[float]) -> Measure:
    m = Measure("receive", "500 × 0.5 MB", target, "instances/s")
    m.values, m.extra = values, {"page_cache_mb_per_s": probes}
    return m


def test_runs_in_different_states_are_judged_like_for_like() -> None:
    ours = measure("ours", [751, 629, 888], [WARM, WARM, WARM])
    theirs = measure("theirs", [633, 574, 2205], [COLD, COLD, WARM])  # median 633: two cold runs
    verdict = _like_for_like(ours, theirs, Ratio("x", "receive", "500 × 0.5 MB", "ours", "theirs", 1.0))
    assert verdict == {"page_cache_states_differ": True, "like_for_like": {"warm": round(751 / 2205, 3)},
                       "met": False}


def test_the_same_mix_of_states_keeps_the_ratio_of_medians() -> None:
    a = measure("a", [1, 2, 3], [WARM, COLD, COLD])
    b = measure("b", [1, 2, 3], [COLD, WARM, COLD])
    assert _like_for_like(a, b, Ratio("x", "receive", "c", "a", "b", 1.0)) == {}


def test_no_common_state_gives_no_verdict() -> None:
    a = measure("a", [5, 5, 5], [WARM, WARM, WARM])
    b = measure("b", [1, 1, 1], [COLD, COLD, COLD])
    assert _like_for_like(a, b, Ratio("x", "receive", "c", "a", "b", 1.0)) == {
        "page_cache_states_differ": True, "like_for_like": {}, "met": None}
