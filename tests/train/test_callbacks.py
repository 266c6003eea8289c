"""Each callback of the trainer's hooks on its own: early stopping, the time budget,
checkpoints, TensorBoard, progress, and a caller's own callback."""

import logging
import time

import numpy as np
import pytest
import torch

from recloop.errors import ConfigError
from recloop.train import (
    Callback,
    Checkpoint,
    EarlyStopping,
    EpochRecord,
    FitState,
    Progress,
    ReportValidation,
    TensorBoard,
    TimeBudget,
    Trainer,
    TrainResult,
    load_checkpoint,
)
from recloop.train import callbacks as callbacks_module
from tests.train.test_trainer import Regression, config, make_network, mse, weights


def fit_state(network, metric="ndcg@10"):
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    return FitState(network, optimizer, scheduler, None, TrainResult(metric=metric), start=time.perf_counter())


def end_epoch(callback, trainer, state, epoch, metric, elapsed=0.0):
    """Play the loop's part at an epoch's end: the record goes into the history, then the hook."""
    state.epoch = epoch
    record = EpochRecord(epoch, loss=1.0, lr=1e-2, train_seconds=0.1, metric=metric, elapsed=elapsed)
    state.result.history.append(record)
    callback.on_epoch_end(trainer, state, record)
    return record


def test_early_stopping_stops_at_patience_and_restores_the_best_weights():
    network = make_network()
    state, trainer, stopping = fit_state(network), Trainer(config()), EarlyStopping(patience=2)
    snapshots = {}
    for epoch, metric in enumerate([0.1, 0.3, 0.2, 0.25, 0.9], start=1):
        with torch.no_grad():
            network[0].weight.add_(1.0)  # training changes the weights every epoch
        snapshots[epoch] = weights(network)
        end_epoch(stopping, trainer, state, epoch, metric, elapsed=10.0 * epoch)
        if state.stop:
            break
    assert epoch == 4 and state.stop == "early_stopping" and state.result.stopped == "early_stopping"
    assert state.result.best_epoch == 2 and state.result.best_metric == 0.3 and state.result.seconds_to_best == 20.0
    assert state.bad_rounds == 2
    stopping.on_fit_end(trainer, state)
    for name, value in network.state_dict().items():
        torch.testing.assert_close(value, snapshots[2][name], rtol=0, atol=0)


def test_early_stopping_with_patience_zero_never_stops_and_without_validation_keeps_the_last_epoch():
    network = make_network()
    state, trainer, stopping = fit_state(network), Trainer(config()), EarlyStopping(patience=0)
    for epoch in range(1, 8):
        end_epoch(stopping, trainer, state, epoch, 1.0 / epoch)
    assert not state.stop and state.result.best_epoch == 1 and state.bad_rounds == 6
    assert end_epoch(stopping, trainer, state, 8, None).metric is None  # not a validation epoch: no change
    assert state.result.best_epoch == 1 and state.bad_rounds == 6

    unvalidated = fit_state(network, metric=None)
    end_epoch(stopping, trainer, unvalidated, 1, None, elapsed=3.0)
    end_epoch(stopping, trainer, unvalidated, 2, None, elapsed=6.0)
    assert unvalidated.result.best_epoch == 2 and unvalidated.result.seconds_to_best == 6.0
    before = weights(network)
    stopping.on_fit_end(trainer, unvalidated)  # no best copy: the last weights stay
    for name, value in network.state_dict().items():
        torch.testing.assert_close(value, before[name], rtol=0, atol=0)


def test_time_budget_stops_after_the_first_epoch_over_it_and_keeps_an_earlier_reason():
    state, trainer, budget = fit_state(make_network()), Trainer(config()), TimeBudget(minutes=1.0)
    end_epoch(budget, trainer, state, 1, None, elapsed=59.0)
    assert not state.stop
    end_epoch(budget, trainer, state, 2, None, elapsed=61.0)
    assert state.stop == state.result.stopped == "time_budget"
    earlier = fit_state(make_network())
    earlier.request_stop("early_stopping")
    end_epoch(budget, trainer, earlier, 1, None, elapsed=120.0)
    assert earlier.stop == earlier.result.stopped == "early_stopping"


def test_checkpoint_writes_last_every_epoch_and_best_when_it_improved(tmp_path):
    network = make_network()
    state, trainer = fit_state(network), Trainer(config(epochs=3))
    stopping, checkpoint = EarlyStopping(patience=5), Checkpoint(tmp_path)
    for epoch, metric in [(1, 0.2), (2, 0.1)]:
        with torch.no_grad():
            network[0].weight.add_(1.0)
        end_epoch(stopping, trainer, state, epoch, metric, elapsed=float(epoch))
        checkpoint.on_epoch_end(trainer, state, state.result.history[-1])
        last, best = load_checkpoint(tmp_path / "last.pt"), load_checkpoint(tmp_path / "best.pt")
        assert last["epoch"] == epoch and last["bad_rounds"] == epoch - 1 and len(last["history"]) == epoch
        assert best["epoch"] == 1 and best["metric"] == 0.2  # epoch 2 was worse: best.pt is epoch 1's
        torch.testing.assert_close(last["network"]["0.weight"], network[0].weight.detach(), rtol=0, atol=0)
    assert not last["finished"] and last["config"]["epochs"] == 3
    torch.testing.assert_close(best["network"]["0.weight"], network[0].weight.detach() - 1.0)


def test_a_run_resumed_by_the_checkpoint_callback_continues_with_identical_results(tmp_path):
    """The Checkpoint callback passed by the caller (no checkpoint_dir in the config)."""
    data = Regression()

    trained = []  # the epochs each run trains

    def run(interrupt_at=None, resume=False):
        network = make_network()  # dropout: the RNG state must be restored too
        every = data.batch(np.arange(len(data)))
        trained.append([])

        def interrupt(trainer, record):
            trained[-1].append(record.epoch)
            if record.epoch == interrupt_at:
                raise KeyboardInterrupt

        trainer = Trainer(config(epochs=5, patience=0, schedule="cosine", warmup_steps=5))
        trainer.fit(network, mse(network), data, validate=lambda: -float(mse(network)(every)),
                    callbacks=[Checkpoint(tmp_path / ("b" if interrupt_at or resume else "a"), resume=resume),
                               interrupt])
        return network, trainer.result

    straight, straight_result = run()
    with pytest.raises(KeyboardInterrupt):
        run(interrupt_at=2)
    resumed, resumed_result = run(resume=True)
    for name, value in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[name], value, rtol=0, atol=0)
    assert [(r.epoch, r.loss, r.metric) for r in resumed_result.history] == \
        [(r.epoch, r.loss, r.metric) for r in straight_result.history]
    assert (resumed_result.steps, resumed_result.best_epoch, resumed_result.best_metric) == \
        (straight_result.steps, straight_result.best_epoch, straight_result.best_metric)
    again, again_result = run(resume=True)  # a finished run resumes to its end: no more training
    assert trained == [[1, 2, 3, 4, 5], [1, 2], [3, 4, 5], []]
    assert len(again_result.history) == 5 and again_result.steps == straight_result.steps
    for name, value in straight.state_dict().items():
        torch.testing.assert_close(again.state_dict()[name], value, rtol=0, atol=0)


class Recorder(Callback):
    def __init__(self):
        self.events = []

    def on_fit_start(self, trainer, state):
        self.events.append(("fit_start", state.first_epoch))

    def on_epoch_start(self, trainer, state):
        self.events.append(("epoch_start", state.epoch, state.epoch_steps))

    def on_step_end(self, trainer, state, step, loss):
        self.events.append(("step", state.epoch, step, loss))

    def on_epoch_end(self, trainer, state, record):
        assert state.result.history[-1] is record and record.metric is not None  # validated, recorded
        self.events.append(("epoch_end", record.epoch, record.loss, state.stop))

    def on_fit_end(self, trainer, state):
        self.events.append(("fit_end", state.result.stopped))


def test_a_custom_callback_receives_the_hooks_in_order():
    data, network = Regression(n=64), make_network()
    recorder, plain = Recorder(), []
    scripted = iter([0.5, 0.4, 0.3])  # patience 2: stops at epoch 3
    result = Trainer(config(epochs=5, patience=2)).fit(
        network, mse(network), data, validate=lambda: next(scripted),
        callbacks=[recorder, lambda trainer, record: plain.append(record.epoch)])
    kinds = [(e[0], *e[1:2]) if e[0] != "step" else ("step", e[1], e[2]) for e in recorder.events]
    assert kinds == [("fit_start", 1)] + [event for epoch in (1, 2, 3) for event in [
        ("epoch_start", epoch), ("step", epoch, 0), ("step", epoch, 1), ("epoch_end", epoch)]] + [("fit_end", "early_stopping")]
    assert all(e[2] == 2 for e in recorder.events if e[0] == "epoch_start")  # 64 examples, batches of 32
    for epoch_end in (e for e in recorder.events if e[0] == "epoch_end"):
        losses = [e[3] for e in recorder.events if e[0] == "step" and e[1] == epoch_end[1]]
        assert epoch_end[2] == pytest.approx(np.mean(losses))
    assert [e[3] for e in recorder.events if e[0] == "epoch_end"] == ["", "", "early_stopping"]  # decided before
    assert plain == [1, 2, 3] and result.steps == 6  # a plain function is an epoch-end callback


def test_a_callback_can_stop_training():
    class StopAtTwo(Callback):
        def on_epoch_end(self, trainer, state, record):
            if record.epoch == 2:
                state.request_stop("user")

    data, network = Regression(), make_network()
    result = Trainer(config()).fit(network, mse(network), data, callbacks=[StopAtTwo()])
    assert result.stopped == "user" and [r.epoch for r in result.history] == [1, 2] and result.best_epoch == 2


def test_report_validation_hands_each_validation_to_the_tuner_and_stops_when_told():
    reports = []

    def report(epoch, value):  # a tuner's trial: prune at the third validation
        reports.append((epoch, value))
        return epoch == 3

    data, network = Regression(), make_network()
    values = iter([0.1, 0.2, 0.15, 0.3, 0.4, 0.5])
    reporter = ReportValidation(report)
    result = Trainer(config(eval_every=1)).fit(network, mse(network), data, validate=lambda: next(values),
                                               callbacks=[reporter])
    assert reports == [(1, 0.1), (2, 0.2), (3, 0.15)]  # the validation curve, epoch by epoch
    assert reporter.pruned and result.stopped == "pruned" and len(result.history) == 3
    assert result.best_epoch == 2  # early stopping still restored the best weights


def test_report_validation_skips_epochs_without_validation():
    reports = []
    reporter = ReportValidation(lambda epoch, value: reports.append(epoch) or False)
    data, network = Regression(), make_network()
    result = Trainer(config(eval_every=2)).fit(network, mse(network), data, validate=lambda: 0.5,
                                               callbacks=[reporter])
    assert reports == [2, 4, 6] and not reporter.pruned and result.stopped != "pruned"


def test_a_callback_that_is_not_callable_is_refused():
    data, network = Regression(), make_network()
    with pytest.raises(ConfigError, match="callback.*int"):
        Trainer(config()).fit(network, mse(network), data, callbacks=[3])


def test_tensorboard_writes_loss_lr_and_metric_per_epoch(tmp_path, monkeypatch):
    class FakeWriter:
        def __init__(self, folder):
            self.folder, self.scalars, self.closed = folder, [], False

        def add_scalar(self, tag, value, step):
            self.scalars.append((tag, step))

        def close(self):
            self.closed = True

    writers = []
    monkeypatch.setattr(callbacks_module, "_summary_writer", lambda folder: writers.append(FakeWriter(folder))
                        or writers[-1])
    data, network = Regression(), make_network()
    Trainer(config(epochs=3, eval_every=2, patience=0)).fit(network, mse(network), data, validate=lambda: 0.5,
                                                            callbacks=[TensorBoard(tmp_path)])
    (writer,) = writers
    assert writer.folder == str(tmp_path) and writer.closed
    assert writer.scalars == [("train/loss", 1), ("train/lr", 1),
                              ("train/loss", 2), ("train/lr", 2), ("valid/ndcg@10", 2),
                              ("train/loss", 3), ("train/lr", 3), ("valid/ndcg@10", 3)]


def test_progress_logs_one_line_per_epoch(caplog):
    data, network = Regression(), make_network()
    with caplog.at_level(logging.INFO, logger="recloop.train"):
        Trainer(config(epochs=2), name="tiny").fit(network, mse(network), data, validate=lambda: 0.5)
    lines = [r.getMessage() for r in caplog.records if r.name == "recloop.train"]
    assert len(lines) == 2 and lines[0].startswith("tiny epoch 1: loss ") and "valid ndcg@10 0.5000" in lines[0]
    assert "best 0.5000@1" in lines[1]


def test_progress_bars_follow_the_steps_and_epochs(monkeypatch):
    import io
    import sys

    from recloop.progress import show_progress

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stderr", Terminal())  # bars draw, and count, only on a terminal
    data, network = Regression(), make_network()
    progress = Progress(bar=True)
    trainer = Trainer(config(epochs=2, progress=False))
    with show_progress():
        trainer.fit(network, mse(network), data, callbacks=[progress])
    assert progress._epochs.n == 2 and progress._epochs.total == 2
    assert progress._steps.n == progress._steps.total == 8  # 256 examples, batches of 32


def test_trainer_bars_follow_the_library_switch(monkeypatch):
    """One switch for every bar: the trainer's draw on a terminal inside ``show_progress()``
    (as the CLI runs) and not outside it or with ``--quiet``, whatever ``train.progress`` says."""
    import io
    import sys

    from recloop.progress import show_progress

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    def drawn(switch: bool) -> str:
        terminal = Terminal()
        monkeypatch.setattr(sys, "stderr", terminal)
        data, network = Regression(), make_network()
        with show_progress(switch):
            Trainer(config(epochs=1, progress=True), name="tiny").fit(network, mse(network), data)
        return terminal.getvalue()

    assert "train tiny" in drawn(True)
    assert drawn(False) == ""
