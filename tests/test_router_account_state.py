"""An account's lifecycle inside the router's core: the supervisor's news through one table."""

from __future__ import annotations

import pytest

from actors.config import EngineConfig
from actors.cores.lifecycle import LifecycleError
from actors.router.core import RouterCore
from protocols import Accepted, InboundMessage, Rejected

T0 = 1_700_000_000.0


def submit(core: RouterCore, account_id: str, mid: str) -> Accepted | Rejected:
    msg = InboundMessage(account_id=account_id, customer_id="+15550001", message_id=mid, text="hi")
    [result] = core.submit([msg], T0)
    return result


def test_news_that_a_failed_account_is_back_up_raises_naming_the_event_and_the_state() -> None:
    core = RouterCore(EngineConfig())
    core.account_gone("a-0", failed=True, now=T0)

    with pytest.raises(LifecycleError, match="account: can't handle 'up' when state=failed"):
        core.account_up("a-0", restarted=True, now=T0)
    with pytest.raises(LifecycleError, match="account: can't handle 'down' when state=failed"):
        core.account_down("a-0")

    result = submit(core, "a-0", "m1")
    assert isinstance(result, Rejected)
    assert result.reason == "account_failed"


def test_a_down_account_still_admits_and_a_removed_one_is_unknown() -> None:
    core = RouterCore(EngineConfig())
    core.account_up("a-0", restarted=False, now=T0)
    core.account_down("a-0")
    core.account_down("a-0")  # crashed again before it was up: the same news

    assert isinstance(submit(core, "a-0", "m1"), Accepted)  # held until the account is back
    core.account_gone("a-0", failed=False, now=T0)
    result = submit(core, "a-0", "m2")
    assert isinstance(result, Rejected)
    assert result.reason == "unknown_account"


def test_a_crash_of_an_account_the_router_never_knew_is_ignored() -> None:
    core = RouterCore(EngineConfig())

    core.account_down("a-0")  # it was starting when this router was configured

    result = submit(core, "a-0", "m1")
    assert isinstance(result, Rejected)
    assert result.reason == "unknown_account"
    core.account_up("a-0", restarted=True, now=T0)
    assert isinstance(submit(core, "a-0", "m2"), Accepted)
