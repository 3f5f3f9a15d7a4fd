"""Transport kinds: the kind -> factory table, and building an account's transport by kind.

The table lives apart from :mod:`actors.account.transports` (the protocol, the results and
the embedded ``loopback`` kind) so that a kind's module can import those without a circle:
this module imports every kind; no kind imports this module.
"""

from __future__ import annotations

import random
from collections.abc import Mapping

from actors.account.transports import LoopbackTransport, Transport, TransportFactory
from protocols import Scalar

__all__ = ["TRANSPORTS", "cloud_api_factory", "make_transport"]


def cloud_api_factory(
    account_id: str, options: Mapping[str, Scalar], rng: random.Random
) -> Transport:
    """Kind ``cloud_api`` (:mod:`actors.account.cloud_api`), imported on first use.

    aiohttp is an optional extra (``http``): an engine that never configures a
    ``cloud_api`` account must not load it. This is the package's one deliberate
    function-level import (``test_import_hygiene`` allows exactly it), and it is no
    circle: ``cloud_api`` never imports this module.

    Raises:
        ValueError: bad options (see :func:`actors.account._cloud_options.parse_options`),
            or aiohttp is not installed.
    """
    try:
        from actors.account.cloud_api import CloudApiTransport
    except ImportError as exc:
        raise ValueError(
            f"account {account_id!r}: transport 'cloud_api' needs aiohttp "
            f"(pip install 'wa-actor-engine[http]'): {exc}"
        ) from exc
    return CloudApiTransport(account_id, options, rng)


TRANSPORTS: dict[str, TransportFactory] = {
    "loopback": LoopbackTransport,
    "cloud_api": cloud_api_factory,
}
"""Transport kinds by name; a new kind adds its factory here."""


def make_transport(
    kind: str, account_id: str, options: Mapping[str, Scalar], rng: random.Random
) -> Transport:
    """Build the transport ``kind`` for ``account_id`` from its ``options``.

    Args:
        kind: the ``AccountSpec.transport`` name.
        account_id: the account the transport sends for (named in errors).
        options: the kind's options.
        rng: passed to the factory (loopback draws failures from it).

    Raises:
        ValueError: ``unknown transport 'x' (known: cloud_api, loopback)``, or the
            factory's own error for a bad option.
    """
    factory = TRANSPORTS.get(kind)
    if factory is None:
        raise ValueError(f"unknown transport {kind!r} (known: {', '.join(sorted(TRANSPORTS))})")
    return factory(account_id, options, rng)
