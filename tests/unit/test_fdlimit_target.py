"""The open-file limit a server or load generator asks for at start (aiodicom.net.transport.open_file_limits)."""

from __future__ import annotations

import resource

from hypothesis import given
from hypothesis import strategies as st

from aiodicom.net.transport import open_file_limits

INF = resource.RLIM_INFINITY
NR_OPEN = 1_048_576  # Linux's default fs.nr_open

limits = st.integers(0, 1 << 24)


def test_the_soft_limit_goes_up_to_a_finite_hard_limit() -> None:
    assert open_file_limits(256, 4096, NR_OPEN) == (4096, 4096)
    assert open_file_limits(4096, 4096, NR_OPEN) == (4096, 4096)


def test_an_unlimited_hard_limit_stays_unlimited_and_the_soft_limit_stops_at_nr_open() -> None:
    assert open_file_limits(1024, INF, NR_OPEN) == (NR_OPEN, INF)
    assert open_file_limits(1024, INF, 65_536) == (65_536, INF)


def test_an_unlimited_soft_limit_is_left_alone() -> None:
    assert open_file_limits(INF, INF, NR_OPEN) == (INF, INF)


@given(limits, st.one_of(limits, st.just(INF)), limits)
def test_nothing_is_ever_lowered(soft: int, hard: int, nr_open: int) -> None:
    if hard != INF and soft > hard:
        soft, hard = hard, soft  # the kernel keeps soft <= hard
    new_soft, new_hard = open_file_limits(soft, hard, nr_open)
    assert new_hard == hard
    assert new_soft >= soft and new_soft != INF
    assert new_soft <= (max(soft, nr_open) if hard == INF else hard)
