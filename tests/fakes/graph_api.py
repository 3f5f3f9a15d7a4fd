"""Re-export of :mod:`wae_loadrun.fakes.graph_api` (the fake Graph API) for the tests."""

from wae_loadrun.fakes.graph_api import Behaviour, FakeGraphAPI, Received

__all__ = ["Behaviour", "FakeGraphAPI", "Received"]
