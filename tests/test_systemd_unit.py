"""deploy/systemd/tolk.service: SIGTERM to the main process only, and a stop timeout
longer than the longest clean stop (drain + close + graceful shutdown + engine teardown)."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

from tolk_server.adapters.shield import ENGINE_TEARDOWN_S
from tolk_server.config import Settings
from tolk_server.transports.uvicorn_bounds import CLOSE_GRACE_S, uvicorn_config
from tolk_server.transports.ws import CLOSE_TIMEOUT_S, FLUSH_TIMEOUT_S

UNIT = Path(__file__).parent.parent / "deploy" / "systemd" / "tolk.service"


def _service() -> configparser.SectionProxy:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text())
    return parser["Service"]


def stop_budget_s(settings: Settings) -> float:
    graceful = uvicorn_config(object(), settings).timeout_graceful_shutdown or 0
    return (settings.drain_timeout_s + FLUSH_TIMEOUT_S + CLOSE_TIMEOUT_S + graceful
            + ENGINE_TEARDOWN_S)


def test_unit_drains_before_it_kills() -> None:
    svc = _service()
    assert svc["KillMode"] == "mixed" and svc["KillSignal"] == "SIGTERM"
    budget = stop_budget_s(Settings())
    assert budget == 44 and CLOSE_GRACE_S <= ENGINE_TEARDOWN_S  # the documented arithmetic
    assert float(svc["TimeoutStopSec"]) >= budget + 10


def test_unit_verifies(tmp_path: Path) -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed (Debian: apt-get install systemd)")
    unit = tmp_path / "tolk.service"  # the binary lives elsewhere here
    unit.write_text(UNIT.read_text().replace("/opt/tolk/bin/tolk", "/bin/true"))
    out = subprocess.run([tool, "verify", str(unit)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and "ignoring" not in out.stderr, out.stderr
