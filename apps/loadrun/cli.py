"""The command line: parse, configure logging, run, print the report, write JSON and PNG."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from actors import ConfigError, EngineError

from .options import parse_args
from .plot import PlotUnavailableError, plot
from .render import render
from .report import write_json
from .run import run
from .runlog import RunLog

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the load runner with ``argv`` (default: the command line); return the exit status.

    0 when every accepted message got exactly one outcome, 1 when not, 2 for bad options or
    an engine that could not start (argparse itself exits with 2 on a bad command line).
    The engine's log goes to a file (see ``runlog``); the report sums it up.
    """
    opts = parse_args(sys.argv[1:] if argv is None else argv)
    # Sinks are chosen before the engine starts: its actor processes inherit them. Warnings
    # go to the run's log file and the report's summary, not into the progress bar.
    log = RunLog(opts.log_level)
    try:
        report = run(opts)
    except BaseException as exc:
        kept = log.close()["path"]
        if kept:
            print(f"loadrun: the engine's log of this run: {kept}", file=sys.stderr)
        if isinstance(exc, (ConfigError, EngineError)):
            print(f"loadrun: error: {exc}", file=sys.stderr)
            return 2
        raise
    report["log"] = log.close()
    print(render(report), flush=True)
    if opts.json_path:
        write_json(report, opts.json_path)
        print(f"report written to {opts.json_path}", file=sys.stderr)
    if opts.plot_path:
        try:
            plot(report, opts.plot_path)
            print(f"plot written to {opts.plot_path}", file=sys.stderr)
        except PlotUnavailableError as exc:
            print(f"loadrun: no plot: {exc}", file=sys.stderr)
    return 0 if report["exactly_once"]["ok"] else 1
