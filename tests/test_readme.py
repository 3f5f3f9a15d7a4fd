"""README's embedding example runs exactly as written."""

from __future__ import annotations

import re
import sqlite3
import stat
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def test_the_embedding_example_in_readme_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    text = README.read_text()
    section = text[text.index("## Embedding the engine") :]
    block = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert block, "README has no python block under 'Embedding the engine'"
    monkeypatch.chdir(tmp_path)
    exec(compile(block.group(1), "README.md", "exec"), {"__name__": "readme"})
    out = capsys.readouterr().out
    assert "status='replied'" in out
    assert "\n0 up\n" in out  # stats(): nothing in flight, the router up
    assert "['drain', 'accounts', 'ai_pool', 'router', 'actor_system']" in out
    # With the defaults the engine keeps its intake store under the working directory
    # (README says so), private, and writes nothing else: no journal, nothing abandoned.
    assert [p.name for p in tmp_path.iterdir()] == ["wae-intake"]
    store = tmp_path / "wae-intake"
    assert stat.S_IMODE(store.stat().st_mode) == 0o700
    assert {p.name for p in store.iterdir()} <= {
        "intake.db",
        "intake.db-wal",
        "intake.db-shm",
        "intake.db.lock",
    }
    done = sqlite3.connect(store / "intake.db")
    try:
        rows = done.execute("SELECT status, count(*) FROM intake GROUP BY status").fetchall()
    finally:
        done.close()
    assert rows == [("replied", 9)]  # every message recorded, and its outcome


def test_the_gateway_config_example_in_readme_loads(tmp_path: Path) -> None:
    from apps.gateway.config import load_gateway_config, resolve_secrets

    text = README.read_text()
    section = text[text.index("## Running against WhatsApp") :]
    block = re.search(r"```toml\n(.*?)```", section, re.DOTALL)
    assert block, "README has no toml block in the gateway section"
    path = tmp_path / "gateway.toml"
    path.write_text(block.group(1))
    env = {"WHATSAPP_VERIFY_TOKEN": "v", "WHATSAPP_APP_SECRET": "s"}
    config = load_gateway_config(path, env=env)
    assert [a.account_id for a in config.accounts] == ["shop-main"]
    assert [p.name for p in config.providers] == ["gpt", "local"]
    resolve_secrets(config, env)


def test_every_file_readme_names_in_the_repository_exists() -> None:
    # The Architecture section walks a message through files by name; a move must update it.
    root = README.parent
    text = README.read_text()
    named = set(re.findall(r"`((?:actors|protocols|apps|scripts|tests)/[\w/.]+\.py)`", text))
    # Inside the actors package README writes `cores/gate.py`, `pool/roster.py`, ...
    roles = "config|cores|runtime|engine|supervisor|router|pool|account"
    named |= {f"actors/{p}" for p in re.findall(rf"`((?:{roles})/\w+\.py)`", text)}
    for section in re.findall(r"`((?:actors|apps)/\w+)/`", text):
        assert (root / section).is_dir(), f"README names {section}/, which does not exist"
    assert len(named) >= 20, named  # the message path alone names more than that
    missing = sorted(p for p in named if not (root / p).is_file())
    assert missing == [], f"README names files that do not exist: {missing}"
