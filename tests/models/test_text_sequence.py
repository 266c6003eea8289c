"""SASRec with item text: the UniSRec adaptor, the three item representations, cold
items and transfer to another catalog. Text embeddings are stand-ins (a seeded random
vector per text), so the tests need no language model."""

import hashlib

import numpy as np
import pytest
import torch

from recloop.artifact import load_model
from recloop.data import leave_one_out
from recloop.errors import ConfigError
from recloop.models import SASRec
from recloop.models.text_adaptor import MoEAdaptor
from tests.models.contract import RecommenderContract
from tests.models.test_sequential import tiny_train


def stand_in_encode(self, texts) -> np.ndarray:
    """A fixed 16-d "text embedding" per text (seeded by its hash) in place of MiniLM."""
    return np.stack([np.random.default_rng(int(hashlib.sha256(t.encode()).hexdigest()[:8], 16)).normal(size=16)
                     for t in texts]).astype(np.float32)


@pytest.fixture(scope="module", autouse=True)
def no_language_model():
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("recloop.text.encoder.TextEncoder.encode", stand_in_encode)
        yield


def make(item_repr, seed=0, **overrides):
    options = {"hidden": 32, "layers": 1, "heads": 2, "max_len": 20, "dropout": 0.1, "attention_dropout": 0.1,
               "item_repr": item_repr, "n_experts": 4, "train": tiny_train(seed=seed)}
    return SASRec(**{**options, **overrides})


class TestTextSASRecContract(RecommenderContract):
    min_ndcg = 0.25

    def make_model(self, seed):
        return make("text", seed)


class TestFusedSASRecContract(RecommenderContract):
    min_ndcg = 0.3

    def make_model(self, seed):
        return make("fused", seed, temperature=0.1)


def test_adaptor_is_a_gated_sum_of_whitened_projections():
    torch.manual_seed(0)
    adaptor = MoEAdaptor(text_dim=6, dim=4, n_experts=3, dropout=0.0)
    with torch.no_grad():
        adaptor.bias.normal_()
    x = torch.randn(5, 6)
    gates = torch.softmax(x @ adaptor.gate.weight.T, dim=-1)
    expected = sum(gates[:, k:k + 1] * ((x - adaptor.bias[k]) @ adaptor.experts[k]) for k in range(3))
    torch.testing.assert_close(adaptor(x), expected, atol=1e-5, rtol=1e-5)


def test_adaptor_maps_any_leading_dimensions_row_by_row():
    """The two-tower's DP-SGD loss passes (B, T, d_text); each row maps as it would alone."""
    torch.manual_seed(1)
    adaptor = MoEAdaptor(text_dim=6, dim=4, n_experts=3, dropout=0.0)
    x = torch.randn(2, 5, 6)
    torch.testing.assert_close(adaptor(x), adaptor(x.reshape(10, 6)).reshape(2, 5, 4))


@pytest.fixture(scope="module")
def cold_split(synthetic):
    """Leave-one-out with items 0-9 removed from training."""
    parts = leave_one_out(synthetic.interactions)
    cold = np.arange(10)
    return parts, parts.train.select(~np.isin(parts.train.item_idx, cold)), cold


@pytest.mark.parametrize("item_repr", ["id", "fused", "text"])
def test_items_never_trained_on_are_their_text_or_nothing(synthetic, cold_split, item_repr):
    _, train, cold = cold_split
    model = make(item_repr, train=tiny_train(epochs=3)).fit(train, item_features=synthetic.item_features)
    vectors = model.item_vectors()
    if item_repr == "id":
        np.testing.assert_array_equal(vectors[cold], 0.0)  # an untrained id vector is noise: zeroed
        assert np.abs(model.score(np.arange(3))[:, cold]).max() == 0.0
        return
    text = model.text_to_item_vectors(model.item_text_embeddings()[cold])
    np.testing.assert_allclose(vectors[cold], text, atol=1e-5)  # fused: the text part alone
    assert np.abs(vectors[cold]).max() > 0
    warm = np.setdiff1d(np.arange(model.n_items), cold)
    if item_repr == "fused":
        assert np.abs(vectors[warm] - model.text_to_item_vectors(model.item_text_embeddings()[warm])).max() > 0


def test_untrained_items_are_no_class_of_the_training_softmax(synthetic, cold_split):
    """The loss never pushes a cold item down: its text would learn 'never wanted'."""
    _, train, cold = cold_split
    model = make("text", train=tiny_train(epochs=1)).fit(train, item_features=synthetic.item_features)
    table = model.network_.items.table().detach().requires_grad_()
    model.network_.items.table = lambda rows=None: table  # the one table the loss reads, as a leaf
    model.loss(model.training_data(train).batch(np.arange(64))).backward()
    assert table.grad[cold].abs().max() == 0 and table.grad.abs().max() > 0


def test_text_fields_choose_what_is_encoded(synthetic, monkeypatch):
    seen = []

    def encode(self, texts):
        seen.extend(texts)
        return stand_in_encode(self, texts)

    monkeypatch.setattr("recloop.text.encoder.TextEncoder.encode", encode)
    parts = leave_one_out(synthetic.interactions)
    SASRec(hidden=8, layers=1, max_len=5, item_repr="text", text_fields=["genre"],
           train=tiny_train(epochs=1)).fit(parts.train, item_features=synthetic.item_features)
    assert seen and all(t.startswith("genre: ") for t in seen)


def test_pretrained_weights_transfer_to_another_catalog(synthetic, tmp_path):
    parts = leave_one_out(synthetic.interactions)
    source = make("text", train=tiny_train(epochs=2)).fit(parts.train, item_features=synthetic.item_features)
    source.save(tmp_path / "source")
    # Another "domain": the users of the second half, items renumbered by a new vocabulary.
    other = parts.train.select(parts.train.user_idx >= synthetic.interactions.n_users // 2)
    keep = np.flatnonzero(np.bincount(other.item_idx, minlength=other.n_items) > 0)[::-1]
    target_log = other.remap(np.unique(other.user_idx), keep)
    features = synthetic.item_features.take(keep)
    zero_shot = make("text", init_from=str(tmp_path / "source")).fit_zero_shot(target_log, item_features=features)
    src, dst = source.network_.state_dict(), zero_shot.network_.state_dict()
    for name in ("blocks.0.attention.qkv.weight", "positions.weight", "items.text_projection.experts"):
        torch.testing.assert_close(dst[name], src[name])
    torch.testing.assert_close(dst["items.embedding.weight"][-1], src["items.embedding.weight"][-1])  # BOS
    # Same item, same text, same adaptor: the same vector in both catalogs.
    item = keep[0]
    np.testing.assert_allclose(zero_shot.item_vectors()[0], source.item_vectors()[item], atol=1e-5)
    assert np.isfinite(zero_shot.score(np.arange(4))).all()
    tuned = make("text", init_from=str(tmp_path / "source"), train=tiny_train(epochs=1))
    tuned.fit(target_log, item_features=features)
    assert not torch.equal(tuned.network_.state_dict()["positions.weight"], src["positions.weight"])
    frozen = make("text", init_from=str(tmp_path / "source"), freeze_encoder=True, train=tiny_train(epochs=1))
    frozen.fit(target_log, item_features=features)
    after = frozen.network_.state_dict()
    for name in ("blocks.0.attention.qkv.weight", "positions.weight", "norm.weight"):
        torch.testing.assert_close(after[name], src[name])  # the encoder stays as pretrained
    assert not torch.equal(after["items.text_projection.experts"], src["items.text_projection.experts"])
    again = load_model(tmp_path / "source")
    np.testing.assert_array_equal(again.score(np.arange(3)), source.score(np.arange(3)))
    with pytest.raises(ConfigError, match="does not match"):
        make("text", hidden=16, heads=1, init_from=str(tmp_path / "source")).fit_zero_shot(
            target_log, item_features=features)
    with pytest.raises(ConfigError, match="init_from"):
        make("text").fit_zero_shot(target_log, item_features=features)


@pytest.mark.parametrize("bad, field", [({"item_repr": "both"}, "item_repr"), ({"n_experts": 0}, "n_experts"),
                                        ({"temperature": -1.0}, "temperature")])
def test_bad_text_settings_name_the_field(bad, field):
    with pytest.raises(ConfigError, match=field):
        SASRec(**bad)


def test_text_without_item_text_says_so(synthetic):
    parts = leave_one_out(synthetic.interactions)
    with pytest.raises(ConfigError, match="item text|text"):
        SASRec(hidden=8, item_repr="text", train=tiny_train(epochs=1)).fit(parts.train)


@pytest.mark.parametrize("item_repr", ["text", "fused"])
def test_a_partial_table_equals_the_full_one_on_its_rows(synthetic, item_repr):
    """The sampled softmax runs the adaptor on the rows a step reads only."""
    model = make(item_repr, loss="sampled", n_negatives=8, train=tiny_train(epochs=1))
    model.fit(leave_one_out(synthetic.interactions).train, item_features=synthetic.item_features)
    items = model.network_.items.eval()
    rows = torch.tensor([0, 5, 7, 42])
    with torch.no_grad():
        partial, full = items.table(rows), items.table()
    torch.testing.assert_close(partial[rows], full[rows])
    assert partial[1].abs().max() == 0


def test_id_dropout_drops_id_vectors_in_training_only(synthetic):
    model = make("fused", id_dropout=0.5, adaptor_dropout=0.0, train=tiny_train(epochs=1))
    model.fit(leave_one_out(synthetic.interactions).train, item_features=synthetic.item_features)
    items = model.network_.items
    with torch.no_grad():
        text = items.text_projection.eval()(items.text_embeddings)
        items.train()
        torch.manual_seed(0)
        dropped = (items.table() - text).abs().amax(1) == 0  # rows that are their text part alone
        items.eval()
        kept = (items.table() - text).abs().amax(1) == 0
    trained = items.id_mask[1:-1].bool()
    assert 0.3 < dropped[trained].float().mean() < 0.7
    assert not kept[trained].any()


def test_an_artifact_written_before_the_id_mask_still_loads(synthetic, tmp_path):
    """SASRec artifacts of the previous release have no ``items.id_mask``: they load, with
    every item's id vector in use, and score as they did."""
    import json

    from safetensors.torch import load_file, save_file

    split = leave_one_out(synthetic.interactions)
    model = make("id").fit(split.history("test"))
    model.save(tmp_path / "m")
    state = load_file(tmp_path / "m" / "state.safetensors")
    key = next(k for k in state if k.endswith("items.id_mask"))
    del state[key]
    save_file(state, tmp_path / "m" / "state.safetensors")
    header = json.loads((tmp_path / "m" / "model.json").read_text())
    del header["state"][key]  # as the header of an artifact written then
    (tmp_path / "m" / "model.json").write_text(json.dumps(header))
    loaded = load_model(tmp_path / "m")
    assert bool((loaded.network_.items.id_mask == 1).all())
    users = np.arange(5)
    np.testing.assert_allclose(loaded.score(users), model.score(users), rtol=1e-5, atol=1e-6)
