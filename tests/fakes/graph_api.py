"""Re-export of :mod:`apps.loadrun.fakes.graph_api` (the fake Graph API) for the tests."""

from apps.loadrun.fakes.graph_api import Behaviour, FakeGraphAPI, Received

__all__ = ["Behaviour", "FakeGraphAPI", "Received"]
