"""The command line: parse, configure logging, run, print the report, write JSON and PNG."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from actors import ConfigError, EngineError
from actors.logging import configure_logging

from .options import parse_args
from .plot import PlotUnavailableError, plot
from .render import render
from .report import write_json
from .run import run

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the load runner with ``argv`` (default: the command line); return the exit status.

    0 when every accepted message got exactly one outcome, 1 when not, 2 for bad options or
    an engine that could not start (argparse itself exits with 2 on a bad command line).
    """
    opts = parse_args(sys.argv[1:] if argv is None else argv)
    # Sinks are chosen before the engine starts: its actor processes inherit them.
    configure_logging(level=opts.log_level.upper())
    try:
        report = run(opts)
    except (ConfigError, EngineError) as exc:
        print(f"loadrun: error: {exc}", file=sys.stderr)
        return 2
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
