"""apps.environment.EnvOverlay: variables set for a while, then put back as they were."""

from __future__ import annotations

import os

import pytest

from apps.environment import EnvOverlay


def test_restore_puts_back_a_changed_variable_and_removes_one_that_was_unset(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OVERLAY_TEST_SET", "before")
    monkeypatch.delenv("OVERLAY_TEST_NEW", raising=False)
    overlay = EnvOverlay()
    overlay.set({"OVERLAY_TEST_SET": "during", "OVERLAY_TEST_NEW": "x"})
    overlay.set({"OVERLAY_TEST_SET": "again"})  # the first saved value is what returns
    assert os.environ["OVERLAY_TEST_SET"] == "again"
    overlay.restore()
    assert os.environ["OVERLAY_TEST_SET"] == "before"
    assert "OVERLAY_TEST_NEW" not in os.environ
    overlay.restore()  # idempotent
    assert os.environ["OVERLAY_TEST_SET"] == "before"
