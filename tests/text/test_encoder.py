"""The text encoder: the offline default model, its on-disk cache, and its errors."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sentence_transformers")

from recloop.data import Features, IdMap
from recloop.errors import ConfigError
from recloop.text import DEFAULT_MODEL, TextEncoder, embed_features, resolve_model


def test_default_model_resolves_to_the_offline_package():
    path = resolve_model(DEFAULT_MODEL)
    assert path != DEFAULT_MODEL and (__import__("pathlib").Path(path) / "modules.json").is_file()


def test_minilm_similarities_are_semantically_sensible(tmp_path):
    encoder = TextEncoder(cache_dir=str(tmp_path), device="cpu")
    texts = ["Astronauts fly a rocket to a distant galaxy", "An alien spaceship lands on a strange planet",
             "A romantic comedy about a wedding and falling in love"]
    vectors = encoder.encode(texts)
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    similarity = vectors @ vectors.T
    assert similarity[0, 1] > similarity[0, 2] + 0.1
    assert similarity[0, 1] > similarity[1, 2] + 0.1


def test_second_encode_hits_the_cache_without_loading_the_model(tmp_path):
    texts = ["a haunted house at night", "pirates hunt for treasure", "a haunted house at night"]
    first = TextEncoder(cache_dir=str(tmp_path), device="cpu")
    vectors = first.encode(texts)
    assert (first.hits, first.misses) == (0, 2)  # the duplicate text is encoded once

    again = TextEncoder(cache_dir=str(tmp_path), device="cpu")
    cached = again.encode(list(reversed(texts)))
    assert (again.hits, again.misses) == (2, 0)
    assert again._model is None  # nothing was loaded: all came from disk
    np.testing.assert_array_equal(cached, vectors[::-1])

    # One new text: only it is encoded, the rest still come from the cache.
    more = again.encode(texts + ["a cowboy rides into town"])
    assert (again.hits, again.misses) == (4, 1)
    np.testing.assert_array_equal(more[:3], vectors)


def test_cache_is_keyed_by_model(tmp_path):
    # A second "model": the same weights through a different local folder name.
    other = tmp_path / "my-local-model"
    other.symlink_to(resolve_model(DEFAULT_MODEL), target_is_directory=True)
    cache = tmp_path / "cache"
    default = TextEncoder(cache_dir=str(cache), device="cpu")
    local = TextEncoder(model=str(other), cache_dir=str(cache), device="cpu")
    assert default.cache_key != local.cache_key
    assert default.cache_path.parent == local.cache_path.parent == cache

    default.encode(["a quiet film about the sea"])
    local.encode(["a quiet film about the sea"])
    assert local.misses == 1 and local.hits == 0  # the default model's entry is not reused
    assert sorted(p.name for p in cache.iterdir()) == sorted([default.cache_key, local.cache_key])


def test_unnormalised_vectors_come_from_the_same_cache(tmp_path):
    normalised = TextEncoder(cache_dir=str(tmp_path), device="cpu").encode(["a war film"])
    raw_encoder = TextEncoder(cache_dir=str(tmp_path), device="cpu", normalize=False)
    raw = raw_encoder.encode(["a war film"])
    assert raw_encoder.hits == 1
    np.testing.assert_allclose(raw / np.linalg.norm(raw), normalised, atol=1e-6)


def test_missing_model_offline_names_the_model_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    encoder = TextEncoder(model=str(tmp_path / "no-such-model"), cache_dir=str(tmp_path))
    with pytest.raises(ConfigError, match="no-such-model.*(local|download)"):
        encoder.encode(["anything"])


def test_bad_options_are_rejected():
    with pytest.raises(ConfigError, match="batch_size"):
        TextEncoder(batch_size=0)
    with pytest.raises(ConfigError, match="unknown config key"):
        TextEncoder(modle="x")
    with pytest.raises(TypeError, match="list of texts"):
        TextEncoder().encode("one string")


def test_embed_features_gives_rows_without_text_a_zero_vector(tmp_path):
    features = Features(IdMap(["a", "b", "c"], "item"),
                        text={"title": np.asarray(["Space rockets", "", "Love letters"], dtype=object)})
    vectors = embed_features(features, TextEncoder(cache_dir=str(tmp_path), device="cpu"))
    assert vectors.shape == (3, 384)
    assert not vectors[1].any()
    np.testing.assert_allclose(np.linalg.norm(vectors[[0, 2]], axis=1), 1.0, atol=1e-5)


def test_a_corrupt_shard_is_ignored_and_re_encoded(tmp_path):
    encoder = TextEncoder(cache_dir=str(tmp_path), device="cpu")
    vectors = encoder.encode(["a submarine thriller"])
    for shard in encoder.cache_path.glob("shard-*.safetensors"):
        shard.write_bytes(b"not a safetensors file")
    again = TextEncoder(cache_dir=str(tmp_path), device="cpu")
    np.testing.assert_allclose(again.encode(["a submarine thriller"]), vectors, atol=1e-5)
    assert again.misses == 1
