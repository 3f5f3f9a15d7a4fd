"""The entry points with dependencies missing: one line saying what to run, exit 2, no traceback.

Two real situations, reproduced without touching the code under test:

- the system Python next to a checkout (no thespian, msgpack, loguru): ``python -I -S``
  starts without site-packages, so nothing installed is importable;
- the ``.venv`` that ``scripts/run`` makes (no aiohttp, the ``http`` extra): a directory
  first on ``PYTHONPATH`` holds an ``aiohttp`` package whose import fails.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from apps.deps import CORE, CORE_INSTALL, HTTP, HTTP_INSTALL

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"


def _run(
    argv: list[str], cwd: Path, *, pythonpath: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WAE_", "PYTHON"))}
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(pythonpath), str(ROOT)])
    env["TMPDIR"] = str(cwd)
    return subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def _one_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    return done.stderr.strip()


@pytest.fixture
def no_aiohttp(tmp_path: Path) -> Path:
    """A directory whose ``aiohttp`` package fails to import, as if it were not installed."""
    fake = tmp_path / "blocked" / "aiohttp"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'aiohttp'\", name='aiohttp')\n"
    )
    return tmp_path / "blocked"


@pytest.mark.parametrize("script", ["loadrun.py", "replay.py"])
def test_a_script_run_by_a_python_without_the_dependencies_says_what_to_run(
    script: str, tmp_path: Path
) -> None:
    # -I -S: no site-packages, no PYTHONPATH; the script finds the checkout's packages itself
    # (from another working directory), then finds thespian and the others missing.
    line = _one_line(_run([sys.executable, "-I", "-S", str(SCRIPTS / script), "--help"], tmp_path))
    assert line.startswith(f"{script}: thespian, msgpack, loguru are not installed for ")
    assert line.endswith(f"run {CORE_INSTALL}")
    assert "scripts/run" in CORE_INSTALL


def test_the_gateway_script_without_the_dependencies_says_to_install_the_http_extra(
    tmp_path: Path,
) -> None:
    done = _run([sys.executable, "-I", "-S", str(SCRIPTS / "gateway.py"), "--demo"], tmp_path)
    line = _one_line(done)
    missing = ", ".join((*CORE, *HTTP))  # all of them: the checkout, no site-packages
    assert line.startswith(f"gateway.py: {missing} are not installed")
    assert "aiohttp" in missing
    assert line.endswith(f"run {HTTP_INSTALL}")


@pytest.mark.parametrize(
    ("argv", "prog"),
    [
        (["-m", "apps.gateway", "--demo"], "python -m apps.gateway"),
        (["-m", "apps.gateway", "--config", "missing.toml"], "python -m apps.gateway"),
        ([str(SCRIPTS / "gateway.py"), "--demo"], "gateway.py"),
        (
            [
                "-c",
                "import sys; from apps.gateway.__main__ import main; sys.exit(main(['--demo']))",
            ],
            "wae-gateway",
        ),  # what the installed wae-gateway command runs
    ],
)
def test_the_gateway_without_aiohttp_says_in_one_line_to_install_the_http_extra(
    argv: list[str], prog: str, tmp_path: Path, no_aiohttp: Path
) -> None:
    line = _one_line(_run([sys.executable, *argv], tmp_path, pythonpath=no_aiohttp))
    assert line.startswith(f"{prog}: aiohttp is not installed for {sys.executable}; ")
    assert line.endswith(f"run {HTTP_INSTALL}")


def test_replay_into_an_engine_without_aiohttp_says_in_one_line_to_install_the_http_extra(
    tmp_path: Path, no_aiohttp: Path
) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(
        '[engine]\ndead_letter_path = "journal.bin"\n\n'
        '[[accounts]]\naccount_id = "a-1"\nphone_number_id = "123"\n\n'
        '[[providers]]\nname = "echo"\nkind = "echo"\n'
    )
    argv = [sys.executable, str(SCRIPTS / "replay.py"), "--config", str(config)]
    line = _one_line(_run(argv, tmp_path, pythonpath=no_aiohttp))
    assert line == (f"replay: --config starts an engine here, which needs aiohttp: {HTTP_INSTALL}")


def test_replay_to_a_running_gateway_needs_no_aiohttp(tmp_path: Path, no_aiohttp: Path) -> None:
    # A dry run of an empty journal: it reads, checks and counts (nothing to send).
    argv = [
        sys.executable,
        str(SCRIPTS / "replay.py"),
        "--gateway",
        "http://127.0.0.1:9/webhook",
        "--phone-number-id-map",
        "a-1=123",
        "--journal",
        str(tmp_path / "journal.bin"),
        "--dry-run",
    ]
    done = _run(argv, tmp_path, pythonpath=no_aiohttp)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("scanned 0 records from 0 file(s): no journal files")


def test_readme_gives_the_same_install_command_as_the_one_line_errors() -> None:
    readme = (ROOT / "README.md").read_text()
    assert HTTP_INSTALL.removesuffix(" in the checkout") in readme
