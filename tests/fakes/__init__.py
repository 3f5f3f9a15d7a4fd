"""Fake remote services for tests: real HTTP servers on loopback, run in a thread.

- ``tests.fakes.graph_api.FakeGraphAPI``: the WhatsApp Cloud API (Graph API) send endpoint.
- ``tests.fakes.openai_api.FakeOpenAI``: an OpenAI-compatible Chat Completions endpoint.

The servers live in the installed package (``apps.loadrun.fakes``, so that the load runner's
``--edges fake`` can start them outside the repository); these modules re-export them.
Each is imported on its own (``from tests.fakes.graph_api import FakeGraphAPI``) so a test
pays only for the fakes it uses.
"""
