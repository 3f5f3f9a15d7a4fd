"""The load runner behind ``scripts/run`` and ``scripts/loadrun.py`` (see README "Load runs").

Private to the scripts: ``traffic`` (who writes), ``driver`` (the submit/collect loop),
``sampler`` (stats and RSS), ``tracker`` (the runner's own exactly-once books), ``report``
and ``render`` (the dict and its table), ``plot``, ``baseline`` (raw Thespian), ``edges``
(loopback + echo, or ``--edges fake``: the HTTP edges against ``fakes``, a fake Graph API
and a fake OpenAI server that the tests use too; importing ``fakes`` needs aiohttp).
``single`` runs one load, ``compare`` the three of ``--durability-compare``, ``sweep`` one
per account count of ``--accounts-sweep``; ``store`` is the run's intake store; ``tail``
explains the slowest outcomes; ``argtypes`` and ``checks`` are the options' value rules
and the combinations refused. ``--crash-every``: ``engine_host`` (and its program ``host_main``)
runs the engine in a child process, ``hosted`` is the driver's proxy to it, ``hostwire``
their frames, ``crashes`` the killing thread and the books of each crash.
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
