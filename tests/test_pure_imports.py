"""Importing the pure parts loads no Thespian and patches nothing; the public names still work.

Each check runs in a fresh interpreter, because this test process has long imported
Thespian for the other tests: only a new process shows what one import pulls in.
"""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import actors.cores

ROOT = Path(__file__).resolve().parent.parent

PURE = [
    "protocols",
    "protocols.codec",
    "actors",
    "actors.config",
    "actors.errors",
    "actors.cores",
    *sorted(f"actors.cores.{m.name}" for m in pkgutil.iter_modules(actors.cores.__path__)),
    "actors.router.core",
    "actors.supervisor.core",
    "actors.pool.core",
    "actors.account.core",
    "actors.engine.ledger",
    "actors.engine.listeners",
    "actors.engine.journal",
    "actors.engine.intake",
    "actors.engine.intake_keeper",
    "actors.engine.intake_book",
    "actors.engine.intake_marks",
    "actors.engine.intake_bounds",
    "actors.engine.journal_read",
    "actors.cores.gate_records",
    "actors.router.outcomes",
    "actors.router.admission",
    "actors.router.accounts",
    "actors.router.requests",
    "actors.router.flight",
    "actors.router.effects",
    "actors.supervisor.lifecycle",
]

_PROBE = """
import json, sys
import {module}
print(json.dumps({{
    "thespian": sorted(m for m in sys.modules if m == "thespian" or m.startswith("thespian.")),
    "aiohttp": "aiohttp" in sys.modules,
}}))
"""

_PATCHED = """
import json, pickle
import actors, actors.config, actors.cores, protocols
from actors import Engine  # the facade loads Thespian, but must not patch it on import
import importlib
tcp = importlib.import_module("thespian.system.transport.TCPTransport")
ipbase = importlib.import_module("thespian.system.transport.IPBase")
from actors.runtime import netsafe
before = {{
    "serializer_is_pickle": tcp.serializer is pickle,
    "filter_is_builtin": "filter" not in tcp.__dict__,
    "address_init_original": ipbase.IPActorAddress.__init__ is not netsafe._address_init,
}}
from actors.runtime.system import install_patches
install_patches()
after = {{
    "serializer_is_pickle": tcp.serializer is pickle,
    "filter_is_builtin": "filter" not in tcp.__dict__,
    "address_init_original": ipbase.IPActorAddress.__init__ is not netsafe._address_init,
}}
print(json.dumps({{"before": before, "after": after}}))
"""


def _run(code: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize("module", PURE)
def test_importing_a_pure_module_loads_no_thespian_and_no_http_library(module: str) -> None:
    loaded = _run(_PROBE.format(module=module))
    assert loaded["thespian"] == [], f"import {module} loaded {loaded['thespian'][:5]}"
    assert loaded["aiohttp"] is False, f"import {module} loaded aiohttp"


def test_the_network_patches_are_installed_when_a_system_starts_not_on_import() -> None:
    states = _run(_PATCHED.format())
    assert states["before"] == {
        "serializer_is_pickle": True,
        "filter_is_builtin": True,
        "address_init_original": True,
    }
    assert states["after"] == {
        "serializer_is_pickle": False,
        "filter_is_builtin": False,
        "address_init_original": False,
    }


def test_the_public_names_still_import_from_where_readme_says() -> None:
    code = (
        "from actors import Engine, EngineConfig, InstanceLimitError, ConfigError, "
        "EngineError, ListenerLimitError, Subscription, BASES, load_config\n"
        "from protocols import InboundMessage, ProviderSpec, Accepted, Rejected, Outcome, "
        "ShutdownReport\n"
        "from actors.engine import Engine as E2\n"
        "assert Engine is E2 and BASES == ('multiprocTCPBase', 'simpleSystemBase')\n"
        "print('{}')\n"
    )
    assert _run(code) == {}
