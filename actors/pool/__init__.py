"""The AI provider pool: a pure core that chooses, calls and fails over providers.

The pool actor (``actors.pool.actor``) drives :class:`PoolCore`; :class:`ProviderRoster`
keeps its loaded providers; providers are sans-IO objects behind the :class:`Provider`
protocol, built by kind from :data:`PROVIDER_KINDS` (:mod:`actors.pool.kinds`).
"""

from actors.pool.core import PoolCore, PoolResult
from actors.pool.kinds import PROVIDER_KINDS, make_provider
from actors.pool.providers import (
    DEFAULT_MAX_IN_FLIGHT,
    EchoProvider,
    InFlightLimitError,
    Provider,
    ProviderClosedError,
    ProviderFactory,
    ProviderResult,
    UnknownKindError,
)
from actors.pool.roster import LoadReport, ProviderRoster, Refused

__all__ = [
    "DEFAULT_MAX_IN_FLIGHT",
    "PROVIDER_KINDS",
    "EchoProvider",
    "InFlightLimitError",
    "LoadReport",
    "PoolCore",
    "PoolResult",
    "Provider",
    "ProviderClosedError",
    "ProviderFactory",
    "ProviderResult",
    "ProviderRoster",
    "Refused",
    "UnknownKindError",
    "make_provider",
]
