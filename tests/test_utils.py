"""configure_threads and the CLI's OpenMP wait policy, seen by OpenMP itself.

GNU OpenMP (the runtime torch's Linux wheels load) prints the settings it read from the
environment at load when ``OMP_DISPLAY_ENV=VERBOSE``: ``GOMP_SPINCOUNT`` is 300000 under
the default policy, 0 under PASSIVE and 30000000000 under ACTIVE. So these tests check
what the runtime really got, not what ``os.environ`` holds afterwards.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from recloop.errors import ConfigError
from recloop.utils import configure_threads

ROOT = Path(__file__).resolve().parents[1]
SPIN = re.compile(r"GOMP_SPINCOUNT = '(\d+)'")

CONFIG = """
name = "threads"
[data]
dataset = "synthetic"
[split]
method = "leave-one-out"
[evaluation]
k = [10]
[[models]]
name = "popular"
"""


def run(args: list[str], **env: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Run Python with OpenMP's settings display on, without any inherited wait policy."""
    environ = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    environ.update(PYTHONPATH=str(ROOT), OMP_DISPLAY_ENV="VERBOSE", **env)
    done = subprocess.run([sys.executable, *args], env=environ, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done, SPIN.findall(done.stderr)


def test_plain_torch_spins_by_default():
    """The control: without recloop's entry point, OpenMP loads with its spinning default."""
    _, spins = run(["-c", "import torch"])
    assert spins == ["300000"]


def test_cli_loads_torch_with_passive_wait_policy(tmp_path):
    config = tmp_path / "exp.toml"
    config.write_text(CONFIG)
    done, spins = run(["-m", "recloop", "evaluate", str(config), "--quiet", "--json", str(tmp_path / "m.json")])
    assert spins == ["0"], done.stderr[-2000:]  # torch loaded once, and after the policy was set
    assert (tmp_path / "m.json").exists()  # the command really ran (and imported torch)


def test_cli_keeps_the_users_wait_policy(tmp_path):
    config = tmp_path / "exp.toml"
    config.write_text(CONFIG)
    _, spins = run(["-m", "recloop", "evaluate", str(config), "--quiet"], OMP_WAIT_POLICY="ACTIVE")
    assert spins == ["30000000000"]


def test_importing_the_cli_does_not_load_torch():
    done, spins = run(["-c", "import sys, recloop.cli; print('torch' in sys.modules)"])
    assert done.stdout.strip() == "False" and spins == []


def test_configure_threads_before_torch_in_a_script():
    code = ("from recloop.utils import configure_threads; setup = configure_threads(threads=1); "
            "import torch; print(setup.wait_policy, setup.in_effect, torch.get_num_threads())")
    done, spins = run(["-c", code])
    assert spins == ["0"] and done.stdout.split() == ["PASSIVE", "True", "1"]


def test_configure_threads_after_torch_warns_and_only_sets_children():
    environ: dict[str, str] = {}
    with pytest.warns(RuntimeWarning, match="before the first `import torch`"):
        setup = configure_threads(environ=environ)
    assert environ == {"OMP_WAIT_POLICY": "PASSIVE"} and setup.wait_policy == "PASSIVE" and not setup.in_effect


def test_configure_threads_keeps_an_explicit_policy_and_sets_threads():
    before = torch.get_num_threads()
    environ = {"OMP_WAIT_POLICY": "ACTIVE"}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # nothing to warn about: the user chose
            setup = configure_threads(threads=1, environ=environ)
        assert environ == {"OMP_WAIT_POLICY": "ACTIVE"} and setup.wait_policy == "ACTIVE" and setup.in_effect
        assert setup.threads == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    environ = {}
    assert configure_threads(wait_policy=None, environ=environ).wait_policy is None and environ == {}
    with pytest.raises(ConfigError, match="threads must be at least 1"):
        configure_threads(threads=0, environ={})
