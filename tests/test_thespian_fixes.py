"""The workaround for Thespian 4.0.1's lost-timer bug is installed and does what it says."""

from __future__ import annotations

from datetime import timedelta

import actors.runtime.thespian_fixes as fixes
from actors.runtime.thespian_fixes import tcp_module

builtin_filter = filter


def test_a_zero_delay_survives_the_transport_filter_so_select_gets_a_timeout() -> None:
    delays = [timedelta(0), None, timedelta(seconds=2)]
    assert list(builtin_filter(None, delays)) == [timedelta(seconds=2)]  # the bug
    assert list(tcp_module.filter(None, delays)) == [timedelta(0), timedelta(seconds=2)]


def test_socket_filtering_in_the_transport_is_unchanged() -> None:
    assert list(tcp_module.filter(None, [0, 5, None, 7])) == [5, 7]
    assert list(tcp_module.filter(lambda x: x > 5, [4, 6])) == [6]


def test_the_fix_is_pinned_to_the_thespian_it_was_written_for() -> None:
    from importlib.metadata import version

    assert version("thespian") == fixes.PATCHED_VERSION
