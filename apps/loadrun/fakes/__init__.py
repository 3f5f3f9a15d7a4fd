"""Fake remote services: real HTTP servers on loopback, each run in a background thread.

- :class:`FakeGraphAPI`: the WhatsApp Cloud API (Graph API) send endpoint
  (``apps.loadrun.fakes.graph_api``).
- :class:`FakeOpenAI`: an OpenAI-compatible Chat Completions endpoint
  (``apps.loadrun.fakes.openai_api``).

The load runner starts both for ``--edges fake``; the tests use them through
``tests.fakes``. Both need aiohttp (``pip install 'wa-actor-engine[http]'``), so the rest
of the load runner never imports this package unless asked to.
"""

from .graph_api import Behaviour, FakeGraphAPI, Received
from .openai_api import DEFAULT_API_KEY, FakeOpenAI, RecordedRequest, default_reply

__all__ = [
    "DEFAULT_API_KEY",
    "Behaviour",
    "FakeGraphAPI",
    "FakeOpenAI",
    "Received",
    "RecordedRequest",
    "default_reply",
]
