"""Conventions (several actor systems as one): the timers the engine sets, and member capabilities.

Why the timers
    A convention member re-registers with its leader every
    ``CONVENTION_REREGISTRATION_PERIOD``; the leader declares a member dead when it has
    not heard from it for that period times ``CONVENTION_REGISTRATION_MISS_MAX``, checked
    about once a period. It never probes, and a crashed member's actors are never reported
    as ``ChildActorExited``: expiry is the only way the leader learns of a lost member.
    Thespian's defaults (7 min 22 s, 3 misses) make that 22 minutes or more. The engine's
    values (:data:`TIMERS`: every 1 s, 3 misses) make it 3 to 4 s: a SIGKILLed member was
    seen gone 1.3 to 3.5 s after the kill. ``CONVENTION_RESTART_PERIOD`` must be set as
    well: it is how long a member's admin waits in its transport loop while it is not yet
    in a convention (``convention_inattention_delay``), and a message arriving does not cut
    that wait short. With Thespian's 3 min 22 s, a member that joined at start-up did not
    re-register until that wait ended, so the leader expired it after 3 s and it was gone
    for minutes (both live members dropped 3.9 s after joining, none back within 20 s;
    with 0:01 they stayed).

    The price: each member sends one ``ConventionRegister`` a second and the leader answers
    it (two small authenticated frames per member per second), and a member that cannot
    register for 3 s (a host frozen that long, a network cut) is dropped, then re-added
    when it registers again, as a new member.

Where Thespian reads them, and when
    ``thespian.system.admin.convention`` reads the three variables with ``getenvdef`` into
    module globals **when it is imported**, format ``M:S`` (minutes, seconds) for the
    periods. That module is imported by ``ActorSystem("multiprocTCPBase", ...)`` (through
    ``multiprocTCPBase`` -> ``multiprocCommon`` -> ``systemAdmin``), in the process that
    starts the system, before the admin is forked; the admin and the actors inherit its
    globals. Importing the engine (``actors.runtime.system`` and everything it imports)
    does not import it. :func:`apply`, which :func:`actors.runtime.system.install_patches`
    calls before every ``ActorSystem(...)``, puts the values into ``os.environ`` first, so
    Thespian reads the engine's values itself; if something had imported the module
    earlier (it read the environment of that moment), :func:`apply` sets the module's
    globals too, which its functions read at each call. Either way :func:`effective`
    reports what Thespian will use. The variables stay in this process's environment, so
    programs it starts inherit them.

Capabilities
    A member's admin carries, besides Thespian's own (``Admin Port``, ``Convention
    Address.IPv4``), :data:`MEMBER_CAPABILITY` (its id, unique in the convention) and
    :data:`MAX_ACCOUNTS_CAPABILITY`; they travel to the leader in ``ConventionRegister``
    and reach the actors that asked ``notifyOnSystemRegistrationChanges`` in
    ``ActorSystemConventionUpdate``, turned into a :class:`MemberEvent` by
    :func:`member_event`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from actors.runtime import thespian_env
from actors.runtime.thespian_env import ThespianSetting

__all__ = [
    "CONVENTION_ADDRESS_CAPABILITY",
    "LEADER",
    "MAX_ACCOUNTS_CAPABILITY",
    "MEMBER_CAPABILITY",
    "THESPIAN_MODULE",
    "TIMERS",
    "MemberEvent",
    "apply",
    "detection_bound_s",
    "effective",
    "member_capabilities",
    "member_event",
    "parse_leader",
    "pinned_check",
]

TIMERS: Mapping[str, str] = {
    "CONVENTION_REREGISTRATION_PERIOD": "0:01",
    "CONVENTION_RESTART_PERIOD": "0:01",
    "CONVENTION_REGISTRATION_MISS_MAX": "3",
}
"""The environment variables the engine sets for Thespian, as Thespian reads them (``M:S``
for the periods). A member re-registers every second; the leader expires one unheard of for
3 s and looks once a second, so a lost member is noticed within about 4 s (<= 5 s)."""

THESPIAN_MODULE = "thespian.system.admin.convention"
"""The module that reads :data:`TIMERS` into its globals when it is imported."""

MEMBER_CAPABILITY = "wae.member"
"""A member's id in its admin's capabilities (unique in a convention)."""

LEADER = "leader"
"""Where an actor with no member requirement runs: the leader's own actor system (member
ids are checked by :func:`member_capabilities`, but a member that named itself so is
refused by the supervisor's placement)."""

MAX_ACCOUNTS_CAPABILITY = "wae.max_accounts"
"""How many account actors a member hosts at most, in its admin's capabilities."""

CONVENTION_ADDRESS_CAPABILITY = "Convention Address.IPv4"
"""Thespian's capability naming the leader's admin, ``"host:port"``; absent on the leader."""

_MEMBER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


_SETTINGS = tuple(ThespianSetting(name, text, THESPIAN_MODULE) for name, text in TIMERS.items())


def detection_bound_s() -> float:
    """The longest a lost member goes unnoticed with :data:`TIMERS`: expiry, plus one look."""
    wanted = {s.env: s.value() for s in _SETTINGS}
    period = wanted["CONVENTION_REREGISTRATION_PERIOD"].total_seconds()
    return float(period * wanted["CONVENTION_REGISTRATION_MISS_MAX"] + period)


def apply() -> None:
    """Make Thespian use :data:`TIMERS` in this process and every process it forks (idempotent).

    Call before ``ActorSystem(...)`` (``install_patches`` does). The environment first, so
    that Thespian reads them itself when it imports its convention module; then, if that
    module was imported already, its globals (:mod:`actors.runtime.thespian_env`).
    """
    thespian_env.apply(_SETTINGS, by="actors.runtime.convention")


def effective() -> dict[str, str]:
    """The values Thespian's convention module holds (importing it), written as :data:`TIMERS`."""
    return thespian_env.effective(_SETTINGS)


def parse_leader(text: str) -> tuple[str, int]:
    """``"HOST:PORT"`` (an IPv4 literal and a port) of a leader's admin.

    Raises:
        ValueError: not an IPv4 address and a port in 1..65535.
    """
    host, sep, port = text.rpartition(":")
    try:
        if sep and port.isdigit() and 0 < int(port) < 65536:
            return str(ipaddress.IPv4Address(host)), int(port)
    except ValueError:
        pass
    raise ValueError(f"leader {text!r}: expected HOST:PORT, an IPv4 address and a port")


def pinned_check(capabilities: Mapping[str, Any] | None, requirements: Any) -> bool:
    """Thespian's ``actorSystemCapabilityCheck`` for an actor pinned to one host.

    With ``requirements`` ``{MEMBER_CAPABILITY: id}`` the actor runs only on the member of
    that id; with none it runs only where there is no member id, the leader. So the
    supervisor decides every placement, and Thespian, which would put every unpinned actor
    on the first compatible member, never picks one itself. Thespian passes ``None`` for
    no requirements in some paths (a capability update).
    """
    wanted = (requirements or {}).get(MEMBER_CAPABILITY)
    return bool(wanted == (capabilities or {}).get(MEMBER_CAPABILITY))


def member_capabilities(
    *, leader: tuple[str, int], member_id: str, max_accounts: int
) -> dict[str, Any]:
    """The capabilities (besides ``Admin Port``) of a member's admin joining ``leader``.

    Raises:
        ValueError: a member id that is not 1-64 letters, digits, ``.``, ``_`` or ``-``
            (starting with a letter or digit), or ``max_accounts`` below 0.
    """
    if not _MEMBER_ID.fullmatch(member_id):
        raise ValueError(
            f"member id {member_id!r}: 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    if max_accounts < 0:
        raise ValueError(f"max accounts {max_accounts}: must be >= 0")
    return {
        CONVENTION_ADDRESS_CAPABILITY: f"{leader[0]}:{leader[1]}",
        MEMBER_CAPABILITY: member_id,
        MAX_ACCOUNTS_CAPABILITY: max_accounts,
    }


@dataclass(frozen=True, slots=True, kw_only=True)
class MemberEvent:
    """A member joined (``added``) or left the convention, as the leader's actors learn it.

    ``member_id`` is empty for an actor system that is not one of ours (no
    :data:`MEMBER_CAPABILITY`), and ``max_accounts`` 0.
    """

    admin: str  # "host:port" of the member's admin
    member_id: str
    max_accounts: int
    added: bool


def member_event(update: Any) -> MemberEvent:
    """The :class:`MemberEvent` of a Thespian ``ActorSystemConventionUpdate``."""
    caps = update.remoteCapabilities or {}
    host, port = update.remoteAdminAddress.addressDetails.sockname[:2]
    max_accounts = caps.get(MAX_ACCOUNTS_CAPABILITY, 0)
    return MemberEvent(
        admin=f"{host}:{port}",
        member_id=str(caps.get(MEMBER_CAPABILITY, "")),
        max_accounts=max_accounts if isinstance(max_accounts, int) else 0,
        added=bool(update.remoteAdded),
    )
