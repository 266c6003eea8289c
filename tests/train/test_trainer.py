import math

import numpy as np
import pytest
import torch
from torch import nn

from recloop.errors import ConfigError, TrainingError
from recloop.evaluate.evaluator import EvaluationConfig
from recloop.evaluate.metrics import ACCURACY_METRICS
from recloop.train import Trainer, TrainerConfig, epoch_batches, load_checkpoint
from recloop.train.config import METRIC_NAMES
from recloop.train.trainer import lr_lambda


class Regression:
    """y = x @ w_true + noise, as training data for a tiny network."""

    def __init__(self, n=256, d=6, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, d, generator=g)
        self.w = torch.randn(d, 1, generator=g)
        self.y = self.x @ self.w + 0.1 * torch.randn(n, 1, generator=g)

    def __len__(self):
        return len(self.x)

    def batch(self, index):
        index = torch.from_numpy(index)
        return {"x": self.x[index], "y": self.y[index]}


def make_network(seed=0, dropout=0.2):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(dropout), nn.Linear(16, 1))


def mse(network):
    return lambda batch: ((network(batch["x"]) - batch["y"]) ** 2).mean()


def config(**overrides):
    return TrainerConfig(**{"epochs": 6, "batch_size": 32, "lr": 1e-2, "progress": False, "num_threads": 1,
                            "seed": 1, **overrides})


def weights(network):
    return {k: v.detach().clone() for k, v in network.state_dict().items()}


def test_training_lowers_the_loss_and_reports_each_epoch():
    data, network = Regression(), make_network()
    result = Trainer(config()).fit(network, mse(network), data)
    losses = [r.loss for r in result.history]
    assert len(losses) == 6 and losses[-1] < 0.5 * losses[0]
    assert result.steps == 6 * math.ceil(256 / 32) and result.stopped == "max_epochs"
    assert result.best_epoch == 6 and not network.training  # eval mode after fit


def test_early_stopping_restores_the_best_weights():
    data, network = Regression(), make_network()
    scripted = iter([0.1, 0.3, 0.2, 0.25, 0.1, 0.9])  # best at epoch 2; patience 2 stops at epoch 4
    snapshots = {}
    result = Trainer(config(patience=2)).fit(network, mse(network), data, validate=lambda: next(scripted),
                                             callbacks=[lambda trainer, record: snapshots.update(
                                                 {record.epoch: weights(network)})])
    assert result.stopped == "early_stopping" and [r.epoch for r in result.history] == [1, 2, 3, 4]
    assert result.best_epoch == 2 and result.best_metric == pytest.approx(0.3)
    for name, value in network.state_dict().items():
        torch.testing.assert_close(value, snapshots[2][name])
    assert not torch.equal(snapshots[4]["0.weight"], snapshots[2]["0.weight"])


def test_validation_runs_every_eval_every_epochs_and_at_the_end():
    data, network = Regression(), make_network()
    calls = []
    result = Trainer(config(epochs=5, eval_every=2, patience=0)).fit(
        network, mse(network), data, validate=lambda: calls.append(1) or float(len(calls)))
    assert [r.epoch for r in result.history if r.metric is not None] == [2, 4, 5]
    assert result.best_epoch == 5


def test_resume_continues_exactly_like_an_uninterrupted_run(tmp_path):
    data = Regression()

    def run(folder, interrupt_at=None, resume=False):
        network = make_network()  # dropout: the RNG state must be restored too
        every = data.batch(np.arange(len(data)))

        def validate():
            return -float(mse(network)(every))

        def interrupt(trainer, record):
            if record.epoch == interrupt_at:
                raise KeyboardInterrupt

        trainer = Trainer(config(checkpoint_dir=str(folder), resume=resume, schedule="cosine", warmup_steps=5))
        trainer.fit(network, mse(network), data, validate=validate, callbacks=[interrupt])
        return network, trainer.result

    straight, straight_result = run(tmp_path / "a")
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "b", interrupt_at=3)
    assert load_checkpoint(tmp_path / "b" / "last.pt")["epoch"] == 3
    resumed, resumed_result = run(tmp_path / "b", resume=True)
    for name, value in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[name], value, rtol=0, atol=0)
    assert [r.loss for r in resumed_result.history] == [r.loss for r in straight_result.history]
    assert resumed_result.steps == straight_result.steps


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(tmp_path):
    data, network = Regression(), make_network()
    steps = {"n": 0}

    def loss(batch):
        steps["n"] += 1
        value = mse(network)(batch)
        return value * float("nan") if steps["n"] > 2 * 8 + 3 else value  # epoch 3, 4th step

    with pytest.raises(TrainingError, match=r"loss became nan at epoch 3, step 3.*epoch 2.*last\.pt.*train\.lr"):
        Trainer(config(checkpoint_dir=str(tmp_path))).fit(network, loss, data, validate=lambda: 0.5)
    saved = load_checkpoint(tmp_path / "last.pt")
    assert saved["epoch"] == 2 and all(torch.isfinite(v).all() for v in saved["network"].values())


def test_nan_loss_without_checkpoints_says_how_to_keep_them():
    data, network = Regression(), make_network()
    with pytest.raises(TrainingError, match="checkpoint_dir"):
        Trainer(config()).fit(network, lambda batch: torch.tensor(float("inf"), requires_grad=True), data)


def test_warmup_and_schedules():
    cfg = config(warmup_steps=4, schedule="linear")
    f = lr_lambda(cfg, total_steps=14)
    assert [round(f(s), 3) for s in (0, 3, 4, 9, 14)] == [0.25, 1.0, 1.0, 0.5, 0.0]
    f = lr_lambda(config(schedule="cosine"), total_steps=10)
    assert f(0) == 1.0 and f(5) == pytest.approx(0.5) and f(10) == pytest.approx(0.0)
    assert lr_lambda(config(), 10)(7) == 1.0


def test_time_budget_stops_after_the_first_epoch_over_it():
    data, network = Regression(), make_network()
    result = Trainer(config(max_minutes=1e-6, epochs=50)).fit(network, mse(network), data, validate=lambda: 0.1)
    assert result.stopped == "time_budget" and len(result.history) == 1


def test_epoch_batches_are_seeded_per_epoch_and_cover_every_example():
    a = epoch_batches(103, 10, epoch=2, seed=5)
    assert len(a) == 11 and sorted(np.concatenate(a)) == list(range(103))
    assert all(np.array_equal(x, y) for x, y in zip(a, epoch_batches(103, 10, epoch=2, seed=5)))
    assert not np.array_equal(a[0], epoch_batches(103, 10, epoch=3, seed=5)[0])
    lengths = np.arange(103) % 7
    bucketed = epoch_batches(103, 10, epoch=0, seed=5, lengths=lengths, bucket_batches=100)
    spread = [np.ptp(lengths[b]) for b in bucketed]
    assert sorted(np.concatenate(bucketed)) == list(range(103)) and np.mean(spread) < 2


def test_shards_of_a_global_batch_are_the_single_process_batch():
    single = epoch_batches(100, 20, epoch=1, seed=3)
    rank0 = epoch_batches(100, 20, epoch=1, seed=3, rank=0, world_size=2)
    rank1 = epoch_batches(100, 20, epoch=1, seed=3, rank=1, world_size=2)
    for whole, a, b in zip(single, rank0, rank1):
        np.testing.assert_array_equal(np.concatenate([a, b]), whole)
    with pytest.raises(ConfigError, match="divisible"):
        epoch_batches(100, 15, epoch=0, seed=0, rank=0, world_size=2)
    tail = epoch_batches(21, 20, epoch=0, seed=0, rank=1, world_size=2)
    assert len(tail) == 2 and len(tail[-1]) == 1  # every rank gets an example of the last batch


@pytest.mark.parametrize("bad, field", [
    ({"epochs": 0}, "train.epochs"),
    ({"lr": -1.0}, "train.lr"),
    ({"schedule": "cosin"}, "cosine"),
    ({"metric": "ndgc@10"}, "ndcg"),
    ({"device": "tpu"}, "train.device"),
    ({"resume": True}, "checkpoint_dir"),
    ({"grad_clip": -1.0}, "train.grad_clip"),
])
def test_bad_trainer_config_names_the_field(bad, field):
    with pytest.raises(ConfigError, match=field):
        TrainerConfig(**bad)


def test_metric_names_and_default_follow_the_evaluator():
    assert set(METRIC_NAMES) == set(ACCURACY_METRICS)
    assert TrainerConfig().metric == EvaluationConfig().select_by


def test_tensorboard_is_optional(tmp_path):
    data, network = Regression(), make_network()
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        with pytest.warns(UserWarning, match="tensorboard"):
            Trainer(config(epochs=1, tensorboard_dir=str(tmp_path))).fit(network, mse(network), data)
    else:
        Trainer(config(epochs=1, tensorboard_dir=str(tmp_path))).fit(network, mse(network), data)
        assert list(tmp_path.iterdir())
