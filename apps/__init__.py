"""Applications built on the engine's public API: the webhook gateway, the dead-letter replay
and the load runner with its fake Graph and OpenAI servers.

They live outside ``actors`` because nothing in the engine depends on them: each uses
``actors.Engine``/``EngineConfig`` and ``protocols`` as any embedding program would, so
they double as worked examples of embedding, and the engine package stays free of aiohttp.
"""
