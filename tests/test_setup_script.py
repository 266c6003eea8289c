"""scripts/setup.sh's torch step, against a stand-in venv python that records the pip
calls (no network, nothing installed)."""

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "setup.sh"

FAKE_PYTHON = """#!/usr/bin/env bash
# stdin-fed version check: print the "installed" torch, succeed when it is the wanted one
if [ "$1" = "-" ]; then cat >/dev/null; echo "$FAKE_TORCH"; [ "${FAKE_TORCH%%+*}" = "$2" ]; exit; fi
echo "$*" >> "$CALLS"
case "$*" in *--index-url*) exit "$FAKE_INDEX_RC";; esac
exit 0
"""


def run_torch_step(tmp_path: Path, torch: str, index_rc: int = 0, index: str | None = None):
    project = tmp_path / "project"
    (project / "scripts").mkdir(parents=True)
    shutil.copy(SCRIPT, project / "scripts" / "setup.sh")
    python = project / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(FAKE_PYTHON)
    python.chmod(python.stat().st_mode | stat.S_IEXEC)
    calls = tmp_path / "calls"
    calls.write_text("")
    env = {**os.environ, "FAKE_TORCH": torch, "FAKE_INDEX_RC": str(index_rc), "CALLS": str(calls)}
    if index is not None:
        env["TORCH_INDEX_URL"] = index
    done = subprocess.run(["bash", str(project / "scripts" / "setup.sh"), "--torch-only"], env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    return done, calls.read_text().splitlines()


@pytest.fixture(autouse=True)
def needs_bash():
    if shutil.which("bash") is None:
        pytest.skip("no bash")


def test_script_parses():
    assert subprocess.run(["bash", "-n", str(SCRIPT)], check=False).returncode == 0


def test_an_installed_torch_of_the_pinned_version_is_kept(tmp_path):
    done, calls = run_torch_step(tmp_path, "2.13.0+cpu")
    assert done.returncode == 0 and calls == []
    assert "[1/1] torch 2.13.0 (CPU build)" in done.stdout and "already installed" in done.stdout


def test_torch_comes_from_the_cpu_index_with_a_short_timeout(tmp_path):
    done, calls = run_torch_step(tmp_path, "2.12.0")
    assert done.returncode == 0
    index = "https://download.pytorch.org/whl/cpu"
    assert calls == [f"-m pip install -q --timeout 15 --retries 1 --index-url {index} torch==2.13.0"]


def test_an_unreachable_cpu_index_falls_back_to_pips_own_index(tmp_path):
    done, calls = run_torch_step(tmp_path, "2.12.0", index_rc=1)
    assert done.returncode == 0
    assert len(calls) == 2 and "--index-url" in calls[0] and calls[1] == "-m pip install -q torch==2.13.0"
    assert "falling back" in done.stderr and "CUDA build" in done.stderr


def test_an_empty_index_setting_goes_to_pips_index_directly(tmp_path):
    done, calls = run_torch_step(tmp_path, "2.12.0", index="")
    assert done.returncode == 0 and calls == ["-m pip install -q torch==2.13.0"]
