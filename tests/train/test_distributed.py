"""Two CPU processes (gloo) train the same model data-parallel: gradients are averaged,
so both ranks hold the same weights, equal to a single-process run with the same global
batch (mathematically the same step; floating-point summation order aside)."""

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file

from recloop.errors import ConfigError
from recloop.train.distributed import DistributedContext, context_from_env
from tests.train.ddp_worker import fit_model, run_worker


def test_two_processes_average_gradients_and_match_one_process(tmp_path):
    epochs = 2
    mp.spawn(run_worker, args=(2, str(tmp_path / "init"), str(tmp_path), epochs), nprocs=2, join=True)
    rank0, rank1 = load_file(tmp_path / "rank0.safetensors"), load_file(tmp_path / "rank1.safetensors")
    for name in rank0:
        torch.testing.assert_close(rank0[name], rank1[name], rtol=0, atol=0)  # identical after every step
    before = torch.get_num_threads()
    single = fit_model(epochs)
    torch.set_num_threads(before)
    for name, value in single.network_.state_dict().items():
        torch.testing.assert_close(rank0[name], value, rtol=1e-4, atol=1e-5)
    # Only rank 0 validates; the others receive its metric (all stop together).
    np.testing.assert_array_equal(np.load(tmp_path / "metrics0.npy"), np.load(tmp_path / "metrics1.npy"))
    assert len(np.load(tmp_path / "metrics0.npy")) == epochs


def test_context_comes_from_torchrun_variables():
    assert context_from_env({}) is None and context_from_env({"WORLD_SIZE": "1"}) is None
    context = context_from_env({"WORLD_SIZE": "4", "RANK": "2", "LOCAL_RANK": "0"})
    assert context == DistributedContext(2, 4, 0, None) and not context.is_main
    with pytest.raises(ConfigError, match="RANK 5"):
        context_from_env({"WORLD_SIZE": "4", "RANK": "5"})


@pytest.mark.slow
def test_torchrun_trains_and_only_rank_zero_writes(tmp_path):
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    torchrun = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
    if not Path(torchrun).exists():
        pytest.skip("torchrun is not installed")
    config = tmp_path / "tiny.toml"
    config.write_text(TINY)
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([torchrun, "--standalone", "--nproc_per_node=2", "-m", "recloop", "train", str(config),
                           "--output", str(tmp_path / "out"), "--quiet"], check=False, env=env, capture_output=True, text=True,
                          timeout=240, cwd=root)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("sasrec") == 1  # one comparison table: only rank 0 prints
    assert (tmp_path / "out" / "state.safetensors").is_file()


TINY = """
name = "tiny-ddp"
[data]
dataset = "synthetic"
[split]
method = "leave-one-out"
[model]
name = "sasrec"
hidden = 16
layers = 1
max_len = 10
[model.train]
epochs = 2
batch_size = 64
num_threads = 1
[evaluation]
k = [10]
"""
