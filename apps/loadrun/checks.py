"""Combinations of the load runner's options that cannot work, said before anything starts."""

from __future__ import annotations

import importlib.util
from typing import Any

from apps.deps import HTTP_INSTALL

from .traffic import MAX_CUSTOMERS

RunOptions = Any
"""``apps.loadrun.options.RunOptions``, named not imported: that module imports this one."""

__all__ = ["check"]


def check(opts: RunOptions) -> list[str]:
    """Problems with a combination of options (empty when fine)."""
    problems = []
    if opts.customers > MAX_CUSTOMERS:
        problems.append(f"--customers must be <= {MAX_CUSTOMERS:,}")
    if opts.kill_every is not None and not opts.base.startswith("multiproc"):
        problems.append("--kill-every needs a multiproc base (actors are processes)")
    if opts.kill_router and opts.kill_every is None:
        problems.append("--kill-router needs --kill-every")
    problems += _check_durability_modes(opts)
    problems += _check_members(opts)
    problems += _check_modes(opts)
    if opts.edges == "fake":
        embedded_only = [
            flag
            for flag, value in (
                ("--provider-jitter", opts.provider_jitter),
                ("--provider-failure-rate", opts.provider_failure_rate),
                ("--transport-failure-rate", opts.transport_failure_rate),
            )
            if value
        ]
        if embedded_only:
            problems.append(f"{', '.join(embedded_only)}: for --edges embedded only")
        if importlib.util.find_spec("aiohttp") is None:
            problems.append(f"--edges fake needs aiohttp: {HTTP_INSTALL}")
    elif opts.provider_jitter > 0 and "jitter_s" not in _echo_options():
        problems.append(
            "--provider-jitter: the echo provider of this engine has no 'jitter_s' option "
            "(actors/pool/providers.py EchoProvider.OPTIONS)"
        )
    return problems


def _check_durability_modes(opts: RunOptions) -> list[str]:
    problems = []
    if opts.crash_every is not None:
        if not opts.base.startswith("multiproc"):
            problems.append(
                f"--crash-every needs a multiproc base (got {opts.base}): it SIGKILLs the "
                "engine's processes, and on this base every actor lives in one process"
            )
        if opts.overrides.get("durability", "").lower() == "off":
            problems.append(
                "--crash-every needs a store that outlives the engine: durability=off keeps "
                "none (use fsync or os)"
            )
        if opts.soak:
            problems.append("--crash-every and --soak: one or the other")
    return problems


MAX_MEMBERS = 50
"""``--members``: at most this many (each is an actor system of several processes)."""


def _check_members(opts: RunOptions) -> list[str]:
    """``--members`` needs actor systems that are processes, and one engine for the run."""
    if not opts.members:
        extra = [
            flag
            for flag, value in (
                ("--member-kill", opts.member_kill),
                ("--member-freeze", opts.member_freeze),
                ("--member-freeze-every", opts.member_freeze_every),
                ("--member-max-accounts", opts.member_max_accounts),
            )
            if value is not None
        ]
        return [f"{', '.join(extra)} needs --members"] if extra else []
    problems = []
    if opts.members > MAX_MEMBERS:
        problems.append(f"--members must be <= {MAX_MEMBERS}")
    if not opts.base.startswith("multiproc"):
        problems.append(
            f"--members needs a multiproc base (got {opts.base}): members join the engine's "
            "actor system over TCP (a convention), which simpleSystemBase has not"
        )
    for flag, on in (
        ("--crash-every", opts.crash_every is not None),
        ("--accounts-sweep", bool(opts.accounts_sweep)),
        ("--durability-compare", opts.durability_compare),
    ):
        if on:
            problems.append(f"--members and {flag}: one or the other")
    if opts.member_kill is not None and opts.member_freeze is not None:
        problems.append("--member-kill and --member-freeze: one or the other")
    if opts.member_freeze_every is not None and opts.member_freeze is None:
        problems.append("--member-freeze-every needs --member-freeze")
    if opts.member_freeze is not None and opts.freeze_every_s <= 2 * opts.member_freeze:
        problems.append(
            f"--member-freeze-every ({opts.freeze_every_s:g}) must exceed twice "
            f"--member-freeze ({opts.member_freeze:g}): the rate before each freeze is "
            "counted over as long a time before it"
        )
    return problems


_MULTI_RUN = (
    ("--durability-compare", "durability and a fresh store", ("durability", "intake_path")),
    ("--accounts-sweep", "a fresh store", ("intake_path",)),
)
"""The modes that run several engines in turn, each on a store they make, and the
``--set`` keys they choose themselves."""


def _check_modes(opts: RunOptions) -> list[str]:
    problems = []
    chosen = {
        "--durability-compare": opts.durability_compare,
        "--accounts-sweep": bool(opts.accounts_sweep),
    }
    for n, (flag, what, keys) in enumerate(_MULTI_RUN):
        if not chosen[flag]:
            continue
        given = [f"--set {k}" for k in keys if k in opts.overrides]
        if given:
            problems.append(f"{flag} sets {what} per measurement itself: drop {', '.join(given)}")
        for other, on in (
            *((later, chosen[later]) for later, _, _ in _MULTI_RUN[n + 1 :]),
            ("--crash-every", opts.crash_every is not None),
            ("--soak", opts.soak),
            ("--plot", opts.plot_path is not None),
        ):
            if on:
                problems.append(f"{flag} and {other}: one or the other")
    return problems


def _echo_options() -> tuple[str, ...]:
    from actors.pool.providers import EchoProvider

    return tuple(EchoProvider.OPTIONS)
