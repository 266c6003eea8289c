"""benchmarks/scale.py end to end at a tiny size: expansion, load, both ALS fits, evaluation."""

from __future__ import annotations

import json

import pytest


def test_scale_benchmark_writes_the_whole_run(ml100k, data_dir, tmp_path, monkeypatch):
    pytest.importorskip("implicit")
    monkeypatch.setenv("RECLOOP_DATA_DIR", str(data_dir))
    from benchmarks import scale

    cache, out = tmp_path / "cache", tmp_path / "scale.json"
    argv = ["--interactions", "2e5", "--iterations", "3", "--cache-dir", str(cache), "--json", str(out)]
    scale.main(argv)
    result = json.loads(out.read_text())
    assert set(scale.KEYS) <= set(result)
    assert abs(result["interactions"] - 200_000) / 200_000 < 0.1
    assert result["users"] > ml100k.interactions.n_users and result["items"] > ml100k.interactions.n_items
    assert result["train"] == result["interactions"] - result["eval_users"]  # leave-one-out, all users evaluated
    for key in ("load_s", "als_fit_s", "implicit_fit_s", "eval_s", "expand_s"):
        assert 0 < result[key] < 300, key
    # Three iterations already learn something: NDCG@10 well above a random ranking's, which
    # with one held-out item among `items` is sum(1 / log2(i + 1), i = 1..10) / items ~ 4.54 / items.
    random = 4.54 / result["items"]
    assert 3 * random < result["ndcg@10"] <= 1 and 3 * random < result["implicit_ndcg@10"] <= 1
    assert 0.1 < result["peak_rss_gb"] < 20

    # A second run reuses the cached expansion, and the plot reads both results.
    again = scale.main(argv[:-1] + [str(tmp_path / "again.json")])
    assert again["expand_s"] == 0.0 and again["interactions"] == result["interactions"]
    png = tmp_path / "cost.png"
    scale.main(["--plot", str(out), str(tmp_path / "again.json"), "--plot-output", str(png)])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
