"""Provider kinds: the ``ProviderSpec.kind`` -> factory table, and building a provider by kind.

The table lives apart from :mod:`actors.pool.providers` (the protocol, the result and the
embedded ``echo`` kind) so that a kind's module can import those without a circle: this
module imports every kind; no kind imports this module.
"""

from __future__ import annotations

import random

from actors.pool.providers import (
    DEFAULT_MAX_IN_FLIGHT,
    EchoProvider,
    Provider,
    ProviderFactory,
    UnknownKindError,
)
from protocols import ProviderSpec

__all__ = ["PROVIDER_KINDS", "make_provider"]


def _openai(
    spec: ProviderSpec, rng: random.Random, *, max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
) -> Provider:
    """Kind ``openai`` (:mod:`actors.pool.openai`), imported on first use.

    aiohttp is an optional extra (``http``): engines that only use ``echo`` never load it.
    This is the package's one deliberate function-level import (``test_import_hygiene``
    allows exactly it), and it is no circle: ``openai`` never imports this module.

    Raises:
        ValueError: aiohttp is not installed, or the spec's options are refused.
    """
    try:
        from actors.pool.openai import OpenAIProvider
    except ImportError as exc:
        raise ValueError(
            f"provider {spec.name!r}: kind 'openai' needs aiohttp "
            f"(pip install 'wa-actor-engine[http]'): {exc}"
        ) from exc
    return OpenAIProvider(spec, rng, max_in_flight=max_in_flight)


PROVIDER_KINDS: dict[str, ProviderFactory] = {"echo": EchoProvider, "openai": _openai}
"""Factories by ``ProviderSpec.kind``; a new kind registers here."""


def make_provider(
    spec: ProviderSpec, rng: random.Random, *, max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
) -> Provider:
    """Build the provider for ``spec`` with the factory registered for its kind.

    Args:
        spec: the provider's spec; ``spec.kind`` picks the factory.
        rng: passed to the factory (the echo kind draws failures from it).
        max_in_flight: most calls the provider keeps in flight.

    Raises:
        UnknownKindError: no factory for ``spec.kind`` (a ``ValueError``).
        ValueError: the kind's factory refused the spec's options.
    """
    factory = PROVIDER_KINDS.get(spec.kind)
    if factory is None:
        known = ", ".join(sorted(PROVIDER_KINDS))
        raise UnknownKindError(f"unknown provider kind {spec.kind!r} (known: {known})")
    return factory(spec, rng, max_in_flight=max_in_flight)
