"""Fake remote services for tests: real HTTP servers on loopback, run in a thread.

- ``tests.fakes.graph_api.FakeGraphAPI``: the WhatsApp Cloud API (Graph API) send endpoint.

Each module is imported on its own (``from tests.fakes.graph_api import FakeGraphAPI``) so
a test pays only for the fakes it uses.
"""
