"""The gateway as a convention leader: a fixed admin port, and placement in ``/healthz``.

Members join the leader's Thespian admin at ``HOST:PORT`` (README "Running on several
hosts"), so the gateway can fix that port (``[gateway] admin_port``), and ``/healthz`` says
where each account runs and how many accounts each host has up.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from actors.config import EngineConfig
from actors.errors import ConfigError
from actors.runtime import procs as _procs
from actors.runtime.system import free_port
from apps.gateway import Gateway, load_gateway_config, resolve_secrets, start_engine
from apps.gateway.__main__ import main
from apps.gateway.delivery import NumberHealth
from apps.gateway.health import health_report
from apps.loadrun.members import listening
from protocols import ActorStats, ProviderSpec, StatsReply
from tests.test_gateway_app import ENV, MAIN_CONFIG, gateway_config, served
from tests.test_gateway_delivery import account as delivery_account

LOOPBACK = "127.0.0.1"

# --- /healthz: placement (pure) ----------------------------------------------------------------


def account(name: str, host: str, *, state: str = "up", failed: str = "") -> ActorStats:
    return delivery_account(name, state=state, failed=failed, host=host)


def stats(*accounts: ActorStats, counters: dict[str, int] | None = None) -> StatsReply:
    router = ActorStats(role="router", name="router", pid=1, depth=0, capacity=10)
    return StatsReply(
        in_flight=0, counters=counters or {}, actors=(router, *accounts), base="multiprocTCPBase"
    )


SPREAD = (
    account("acct-1", "leader"),
    account("acct-2", "m1"),
    account("acct-3", "m1", failed="HTTP 401: Graph error 190 (OAuthException): expired"),
    account("acct-4", "m2"),
    account("acct-5", "m2", state="restarting"),
)
PHONES = {f"10{i}": f"acct-{i}" for i in range(1, 6)}
MEMBERS = {"supervisor.members_up": 2, "supervisor.members_lost": 1, "placement.m1": 2}


def test_each_account_in_health_names_the_host_it_runs_on() -> None:
    _, body = health_report(stats(*SPREAD, counters=MEMBERS), PHONES, NumberHealth())
    hosts = {name: entry["host"] for name, entry in body["accounts"].items()}
    assert hosts == {
        "acct-1": "leader",
        "acct-2": "m1",
        "acct-3": "m1",
        "acct-4": "m2",
        "acct-5": "m2",
    }


def test_health_counts_each_hosts_accounts_up_and_the_members_up_and_lost() -> None:
    code, body = health_report(stats(*SPREAD, counters=MEMBERS), PHONES, NumberHealth())
    assert body["members"] == {
        "members_up": 2,
        "members_lost": 1,
        "hosts": {
            "leader": {"up": 1, "total": 1},
            # acct-3's token expired: it cannot send, but its actor is up on m1.
            "m1": {"up": 2, "total": 2},
            "m2": {"up": 1, "total": 2},
        },
    }
    # The fields that were there before placement keep their meaning.
    assert (code, body["status"]) == (200, "degraded")
    assert body["can_send"] == ["acct-1", "acct-2", "acct-4"]
    assert body["not_up"] == ["account:acct-5", "account:acct-3"]
    assert body["accounts"]["acct-3"]["state"] == "auth_failed"


def test_an_unknown_host_is_left_out_and_missing_member_counters_are_zero() -> None:
    unplaced = account("acct-1", "")
    _, body = health_report(stats(unplaced), {"101": "acct-1", "102": "acct-2"}, NumberHealth())
    assert "host" not in body["accounts"]["acct-1"]
    assert "host" not in body["accounts"]["acct-2"]  # configured, not in the engine
    assert body["members"] == {"members_up": 0, "members_lost": 0, "hosts": {}}


# --- [gateway] admin_port ----------------------------------------------------------------------


def test_admin_port_defaults_to_0_a_free_port_and_takes_any_tcp_port() -> None:
    assert gateway_config().admin_port == 0
    for port in (1, 1900, 65535):
        assert gateway_config(admin_port=port).admin_port == port


@pytest.mark.parametrize("bad", [-1, 65536, True, "1900", 1900.0])
def test_an_admin_port_out_of_range_or_not_an_integer_is_refused(bad: Any) -> None:
    with pytest.raises(ConfigError, match=r"GatewayConfig admin_port = .*: must be an integer"):
        gateway_config(admin_port=bad)


def test_an_admin_port_with_simple_system_base_is_refused_as_it_runs_no_admin() -> None:
    rule = r"GatewayConfig admin_port = 1900: must be 0 or left out with base = 'simpleSystemBase'"
    with pytest.raises(ConfigError, match=rule):
        gateway_config(base="simpleSystemBase", admin_port=1900)
    assert gateway_config(base="simpleSystemBase", admin_port=0).admin_port == 0


def write_config(tmp_path: Path, gateway_lines: str) -> Path:
    """``MAIN_CONFIG`` (simpleSystemBase) with ``gateway_lines`` added to its [gateway]."""
    text = MAIN_CONFIG.replace("{dead}", str(tmp_path / "dead.bin"))
    text = text.replace("{intake}", str(tmp_path / "intake.db"))
    path = tmp_path / "gateway.toml"
    path.write_text(text.replace("[gateway]\n", f"[gateway]\n{gateway_lines}\n", 1))
    return path


def test_the_toml_file_sets_admin_port_in_its_gateway_table(tmp_path: Path) -> None:
    path = write_config(tmp_path, "admin_port = 1900")
    path.write_text(path.read_text().replace("simpleSystemBase", "multiprocTCPBase"))
    assert load_gateway_config(path).admin_port == 1900
    path = write_config(tmp_path, "")
    assert load_gateway_config(path).admin_port == 0


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("admin_port = 70000", r"gateway\.toml \[gateway\] admin_port = 70000: must be an integer"),
        ("admin_port = 1900", r"gateway\.toml \[gateway\] admin_port = 1900: must be 0 or left"),
        ("admin_prot = 1900", r"unknown key 'admin_prot'; did you mean 'admin_port'\?"),
    ],
)
def test_the_toml_file_names_a_bad_admin_port(tmp_path: Path, line: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_gateway_config(write_config(tmp_path, line))  # its base is simpleSystemBase


def test_the_command_refuses_an_admin_port_with_simple_system_base(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAE_")}
    env.update(ENV)
    path = write_config(tmp_path, "")
    cmd = [sys.executable, "-m", "apps.gateway", "--config", str(path), "--admin-port", "1900"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2, done.stderr
    assert "--admin-port overrides [gateway] admin_port = 1900: must be 0" in done.stderr


def test_the_demo_refuses_an_admin_port(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--demo", "--admin-port", "1900"])
    assert exit_.value.code == 2
    assert "--admin-port needs --config" in capsys.readouterr().err


# --- the gateway's engine on its fixed admin port ----------------------------------------------


def test_on_multiproc_the_admin_listens_on_the_configured_port_and_health_shows_the_leader(
    tmp_path: Path,
) -> None:
    port = free_port(LOOPBACK)
    config = gateway_config(
        base="multiprocTCPBase",
        admin_port=port,
        engine=EngineConfig(
            dead_letter_path=str(tmp_path / "dead.bin"),
            intake_path=str(tmp_path / "intake" / "intake.db"),
        ),
        providers=(ProviderSpec(name="echo", kind="echo", priority=1),),
    )
    engine = start_engine(config, seed=11)  # before the loop and the worker thread
    pids = engine.pids
    health: dict[str, Any] = {}
    try:
        admin_pid = engine.stats().admin_pid
        assert admin_pid is not None
        assert engine.admin_port == port
        assert f"{LOOPBACK}:{port}" in listening((LOOPBACK,), of={admin_pid})
        gateway = Gateway(config, engine, resolve_secrets(config, ENV), shutdown_engine=True)

        async def scenario() -> None:
            async with served(gateway) as http, http.get("/healthz") as resp:
                assert resp.status == 200
                health.update(await resp.json())

        asyncio.run(scenario())
    finally:
        engine.shutdown()
    assert {name: entry.get("host") for name, entry in health["accounts"].items()} == {
        "acct-1": "leader"
    }
    assert health["members"] == {
        "members_up": 0,
        "members_lost": 0,
        "hosts": {"leader": {"up": 1, "total": 1}},
    }
    assert not [p for p in pids if _procs.alive(p)], "an actor process outlived the gateway"
    assert f"{LOOPBACK}:{port}" not in listening((LOOPBACK,))
