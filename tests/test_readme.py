"""README's embedding example runs exactly as written."""

from __future__ import annotations

import re
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
    assert "['drain', 'accounts', 'ai_pool', 'router', 'actor_system']" in out
    assert list(tmp_path.iterdir()) == []
