"""The workarounds for Thespian 4.0.1's bugs are installed and do what they say."""

from __future__ import annotations

from datetime import timedelta

import pytest

import actors.runtime.thespian_fixes as fixes
from actors.runtime.thespian_fixes import tcp_module

builtin_filter = filter


@pytest.fixture(autouse=True)
def _applied() -> None:
    fixes.apply()  # idempotent; an engine started earlier in the session applied it too


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


class _Admin:
    """What ``_not_compatible`` reads of a convention admin: its bookings."""

    def __init__(self, pending: object) -> None:
        self._pendingChildren = pending


def test_a_forwarded_create_request_is_no_longer_booked_by_the_admin_that_forwarded_it() -> None:
    seen: list[object] = []
    forwarded = fixes._forget_forwarded(lambda admin, envelope: seen.append(envelope) or True)
    request, other = object(), object()
    admin = _Admin({7: [request], 8: [other]})
    assert forwarded(admin, request) is True  # what Thespian's own answered
    assert seen == [request]  # which still ran, after the booking went
    assert admin._pendingChildren == {8: [other]}
    shutting = _Admin([])  # at its shutdown the admin holds a list: left alone
    forwarded(shutting, request)
    assert shutting._pendingChildren == []


def test_the_convention_admin_is_patched_once() -> None:
    from thespian.system.admin.convention import ConventioneerAdmin

    from actors.runtime.system import install_patches

    install_patches()
    install_patches()
    patched = ConventioneerAdmin._not_compatible
    assert getattr(patched, "_wae_forgets", False)
    fixes.apply()
    assert ConventioneerAdmin._not_compatible is patched
