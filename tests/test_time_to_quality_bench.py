"""benchmarks/time_to_quality.py: the curve from a Trainer history, the crossing times and the ratio."""

from __future__ import annotations

from benchmarks.time_to_quality import compare, first_reaching, recloop_curve


def point(elapsed, metric, train_elapsed=None):
    return {"elapsed": elapsed, "train_elapsed": elapsed if train_elapsed is None else train_elapsed, "metric": metric}


def test_first_reaching_is_the_first_validation_at_or_above_the_level():
    curve = [point(10, 0.02), point(20, 0.05), point(30, 0.04), point(40, 0.06)]
    assert first_reaching(curve, 0.05) == 20  # reached exactly, then lost: still the first time
    assert first_reaching(curve, 0.055) == 40
    assert first_reaching(curve, 0.07) is None
    assert first_reaching(list(reversed(curve)), 0.05) == 20  # order of the points does not matter


def test_compare_takes_recboles_best_level_and_divides_their_time_by_ours():
    recbole = [point(300, 0.010, 280), point(600, 0.021, 560), point(900, 0.019, 840)]
    recloop = [point(20, 0.015, 15), point(40, 0.025, 30), point(60, 0.052, 45)]
    out = compare(recloop, recbole, target=0.05)
    assert out["level"] == 0.021
    wall, train = out["elapsed"], out["train_elapsed"]
    assert (wall["recbole_seconds"], wall["recloop_seconds"], wall["ratio"]) == (600, 40, 15.0)
    assert (train["recbole_seconds"], train["recloop_seconds"], train["ratio"]) == (560, 30, 560 / 30)
    assert wall["recloop_seconds_to_target"] == 60 and train["recloop_seconds_to_target"] == 45

    never = compare([point(20, 0.01)], recbole, target=0.05)
    assert never["elapsed"]["ratio"] is None and never["elapsed"]["recloop_seconds_to_target"] is None


def test_recloop_curve_sums_training_time_over_unvalidated_epochs_too():
    history = [
        {"epoch": 1, "loss": 7.0, "train_seconds": 10.0, "train_cpu_seconds": 9.0, "valid_seconds": 0.0,
         "metric": None, "elapsed": 10.0},
        {"epoch": 2, "loss": 6.5, "train_seconds": 11.0, "train_cpu_seconds": 10.0, "valid_seconds": 4.0,
         "metric": 0.03, "elapsed": 25.0},
    ]
    (only,) = recloop_curve(history)
    assert only["epoch"] == 2 and only["metric"] == 0.03
    assert only["elapsed"] == 25.0 and only["train_elapsed"] == 21.0 and only["train_cpu_seconds"] == 19.0


def test_plot_and_table_read_a_result_file(tmp_path):
    from benchmarks.time_to_quality import main

    curve = [{**point(20, 0.03, 15), "epoch": 1}, {**point(40, 0.051, 30), "epoch": 2}]
    recbole = [{**point(300, 0.02, 280), "epoch": 1}]
    report = {"target": 0.05, "threads": 2, "load_average_start": [1.0, 1.0, 1.0],
              "recloop": {"minutes": 5, "curve": curve}, "recbole": {"curve": recbole},
              "comparison": compare(curve, recbole, 0.05)}
    path = tmp_path / "ttq.json"
    path.write_text(__import__("json").dumps(report))
    main(["--plot", str(path), "--png", str(tmp_path / "ttq.png")])
    assert (tmp_path / "ttq.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
