"""The Thespian runtime under the engine; the only place that knows Thespian's names.

``system`` starts, asks and reaps one actor system; ``netsafe`` binds its ports to loopback
and unpickles frames through an allowlist, installed by ``system`` before the first process
is forked; ``thespian_fixes`` patches the pinned Thespian's bugs; ``base_actor`` is the base
of every actor (dispatch, one timer, crash-only, effects sent at the end of a turn);
``servant`` is the shell of the pool and account actors; ``wiring`` holds the internal
messages between the facade and the actors; ``procs`` reads ``/proc`` for process
bookkeeping; ``aio`` runs an asyncio loop in a thread of an actor process for HTTP edges.

Importing this package imports none of them.
"""
