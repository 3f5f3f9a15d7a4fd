"""Replay: resubmit the dead-letter journal, or an unheld intake store's unfinished rows.

The target's dedupe absorbs repeats.

Reading
    Files are read oldest first: ``<path>.1``, then ``<path>``. A complete record whose
    frame does not decode is skipped and counted in ``corrupt`` (its length prefix is
    plausible, so reading goes on after it). A torn final record, the trace of a crash
    mid-write, and everything from a record whose length is impossible are not replayed:
    their bytes are counted in ``torn_bytes``. Every finding names its file and offset.

Submitting
    Records go in batches through ``target.submit_many`` (an :class:`~actors.Engine`, or
    anything with that method). By answer:

    - ``Accepted``: taken; its outcome goes to whoever collects the engine's outcomes.
    - ``duplicate``: the target already had it (dedupe); settled as well.
    - ``capacity``, ``customer_backlog``: retried with exponential backoff (at least the
      target's ``retry_after_s`` hint, if it has one) while the waiting stays within
      ``timeout_s`` in all; what is still refused is reported by id, never dropped.
    - ``shutting_down``, or a :class:`ReplayTargetError`: the target takes nothing more,
      so the replay stops; the remaining records are read and counted ``unsubmitted``.
    - any other reason (``unknown_account``, ``invalid``, ``account_failed``): reported
      by id.

Consuming (``consume=True``)
    Deleting what was settled, never what was not. First the journal files are claimed:
    renamed to ``<path>.replaying-<UTC stamp>-<n>``, so an engine that journals during the
    replay starts a new ``<path>`` instead of mixing into the files being read. Claims
    left by an interrupted earlier run are replayed first. After the replay, every record
    that was not settled (refused, rejected, unsubmitted) is appended to ``<path>`` again
    through :class:`~actors.engine.journal.DeadLetterJournal` (bounded, fsynced), and only then
    are the claimed files deleted. A claimed file with corrupt records is renamed to
    ``<path>.corrupt-<stamp>-<n>`` instead, for inspection; its readable records were
    handled like the others; one that grew while it was read (an engine still had it open)
    is left as a claim. So a second replay does not resubmit what the first settled,
    and the journal stays bounded. A crash before the deletion leaves the claims, which
    the next consuming replay takes up (at worst resubmitting settled records, which the
    same engine absorbs as duplicates). Run one consuming replay per journal at a time.

The intake store (:func:`replay_store`, :func:`scan_store`)
    With ``durability`` ``fsync`` or ``os`` nothing is journaled: what an engine leaves
    unfinished (a crash, a shutdown) stays in its intake store, and that engine resumes
    it at its next start. When it is not coming back on that store, the store's
    unfinished rows can go to *another* engine (its gateway, or one embedded): read-only,
    refused while a live engine holds the store, rows already replied (marked sent)
    skipped and counted. Nothing is consumed: a store is never written by the replay
    (see :mod:`apps.replay.store`). Submitting and retrying are the journal's.

Modules
    :mod:`~apps.replay.report` (the report, the target protocol and its error),
    :mod:`~apps.replay.reader` (what sources count; the journal: reading, claiming,
    :func:`scan_journal`), :mod:`~apps.replay.store` (the intake store as a source,
    :func:`scan_store`), :mod:`~apps.replay.run` (:func:`replay_journal`,
    :func:`replay_store`), and
    :mod:`~apps.replay.gateway` (a target that posts signed webhooks to a gateway).
"""

from apps.replay.reader import replay_files, scan_journal
from apps.replay.report import RETRY_REASONS, ReplayReport, ReplayTarget, ReplayTargetError
from apps.replay.run import replay_journal, replay_store
from apps.replay.store import scan_store

__all__ = [
    "RETRY_REASONS",
    "ReplayReport",
    "ReplayTarget",
    "ReplayTargetError",
    "replay_files",
    "replay_journal",
    "replay_store",
    "scan_journal",
    "scan_store",
]
