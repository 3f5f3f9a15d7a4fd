"""The load runner behind ``scripts/run`` and ``scripts/loadrun.py`` (see README "Load runs").

Private to the scripts: ``traffic`` (who writes), ``driver`` (the submit/collect loop),
``sampler`` (stats and RSS), ``tracker`` (the runner's own exactly-once books), ``report``
and ``render`` (the dict and its table), ``plot``, ``baseline`` (raw Thespian), ``edges``
(loopback + echo, or ``--edges fake``: the HTTP edges against ``fakes``, a fake Graph API
and a fake OpenAI server that the tests use too; importing ``fakes`` needs aiohttp).
"""

from .options import RunOptions, build_parser, parse_args
from .plot import PlotUnavailableError, plot
from .render import render, verdict
from .report import write_json
from .run import run

__all__ = [
    "PlotUnavailableError",
    "RunOptions",
    "build_parser",
    "parse_args",
    "plot",
    "render",
    "run",
    "verdict",
    "write_json",
]
