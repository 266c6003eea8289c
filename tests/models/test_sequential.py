import numpy as np
import pytest
import torch

from recloop.artifact import load_model
from recloop.data import Interactions, UserHistories, leave_one_out
from recloop.data.ids import IdMap
from recloop.errors import ConfigError
from recloop.models import GRU4Rec, SASRec
from recloop.models.sequential import IGNORE, SequenceBatches, last_tokens
from recloop.train.sampler import epoch_batches
from tests.models.contract import RecommenderContract


def tiny_train(**overrides):
    return {"epochs": 25, "lr": 5e-3, "batch_size": 64, "patience": 5, "seed": 0, "num_threads": 1,
            "progress": False, **overrides}


class TestSASRecContract(RecommenderContract):
    min_ndcg = 0.3

    def make_model(self, seed):
        return SASRec(hidden=32, layers=1, heads=2, max_len=20, dropout=0.1, attention_dropout=0.1,
                      train=tiny_train(seed=seed))


class TestGRU4RecContract(RecommenderContract):
    min_ndcg = 0.3

    def make_model(self, seed):
        return GRU4Rec(embedding=32, hidden=32, max_len=20, dropout=0.1, train=tiny_train(seed=seed))


class TestSampledSoftmaxSASRecContract(RecommenderContract):
    min_ndcg = 0.25

    def make_model(self, seed):
        return SASRec(hidden=32, layers=1, max_len=20, dropout=0.1, attention_dropout=0.1, loss="sampled",
                      n_negatives=20, negatives="popularity", train=tiny_train(seed=seed))


def test_tokens_are_bos_then_the_latest_items_left_padded():
    items = np.array([5, 6, 7, 1, 2])
    # rows: [5, 6, 7] and [1, 2] and an empty one
    out = last_tokens(items, np.array([0, 3, 5]), np.array([3, 5, 5]), max_len=3, bos=9)
    np.testing.assert_array_equal(out, [[6, 7, 8], [9, 2, 3], [0, 0, 9]])
    out = last_tokens(items, np.array([0, 3]), np.array([3, 5]), max_len=5, bos=None)
    np.testing.assert_array_equal(out, [[0, 0, 6, 7, 8], [0, 0, 0, 2, 3]])


def test_whole_sequence_targets_are_the_next_items():
    users, items = IdMap(["a", "b"], "user"), IdMap([str(i) for i in range(10)], "item")
    log = Interactions(np.array([0, 0, 0, 0, 1]), np.array([3, 4, 5, 6, 9]), users, items)
    data = SequenceBatches.from_log(log, max_len=3)
    bos = 11
    # user a: tokens [BOS, 4, 5, 6, 7] (item + 1); the window is its last 4, user b's is [BOS, 10]
    np.testing.assert_array_equal(data.tokens, [4, 5, 6, 7, bos, 10])
    np.testing.assert_array_equal(data.lengths, [3, 1])
    # inputs = last 3 of tokens[:-1], targets = the items after them
    inputs, targets = data.batch(np.array([0, 1]))
    np.testing.assert_array_equal(inputs, [[4, 5, 6], [0, 0, bos]])
    np.testing.assert_array_equal(targets, [[4, 5, 6], [IGNORE, IGNORE, 9]])
    inputs, targets = data.batch(np.array([1]))
    assert inputs.shape == (1, 1) and int(inputs[0, 0]) == bos and int(targets[0, 0]) == 9


def dense_reference(log, max_len):
    """The former training data: dense (users, max_len) inputs and targets."""
    indptr = log.user_indptr
    users = np.flatnonzero(np.diff(indptr) > 0)
    starts, ends = indptr[users], indptr[users + 1]
    inputs = last_tokens(log.item_idx, starts, ends - 1, max_len, log.n_items + 1)
    targets = last_tokens(log.item_idx, starts, ends, max_len, None) - 1
    targets[targets < 0] = IGNORE
    return inputs, targets


@pytest.mark.parametrize("max_len", [1, 4, 20, 500])
def test_compact_batches_equal_the_dense_matrices_row_for_row(synthetic, tmp_path, max_len):
    log = synthetic.interactions
    inputs, targets = dense_reference(log, max_len)
    data = SequenceBatches.from_log(log, max_len)
    assert data.tokens.dtype == np.int32 and data.tokens.nbytes <= (inputs.nbytes + targets.nbytes) / 2
    np.testing.assert_array_equal(data.lengths, (inputs != 0).sum(axis=1))
    data.save(tmp_path)
    mapped = SequenceBatches.open(tmp_path)
    assert isinstance(mapped.tokens, np.memmap)
    for index in epoch_batches(len(data), 16, epoch=1, seed=0, lengths=data.lengths):
        width = int(data.lengths[index].max())
        for source in (data, mapped):
            x, y = source.batch(index)
            np.testing.assert_array_equal(x.numpy(), inputs[index, -width:])
            np.testing.assert_array_equal(y.numpy(), targets[index, -width:])


@pytest.mark.parametrize("make", [SASRec, GRU4Rec])
def test_memory_mapped_training_data_trains_the_same_model(synthetic, tmp_path, make):
    log = leave_one_out(synthetic.interactions).train
    options = {"max_len": 10, "loss": "sampled", "n_negatives": 16, "train": tiny_train(epochs=1, seed=3)}
    in_memory = make(**options).fit(log)
    mapped = make(**options, train_data_dir=str(tmp_path)).fit(log)
    assert (tmp_path / "tokens.npy").exists()
    assert mapped.train_result_.history[-1].loss == in_memory.train_result_.history[-1].loss
    np.testing.assert_array_equal(mapped.score([0, 1]), in_memory.score([0, 1]))


def test_scoring_uses_the_given_history_not_the_training_log(synthetic):
    parts = leave_one_out(synthetic.interactions)
    model = SASRec(hidden=16, layers=1, max_len=10, train=tiny_train(epochs=2)).fit(parts.train)
    a = UserHistories.from_lists([[1, 2, 3]], model.n_items)
    b = UserHistories.from_lists([[7, 8]], model.n_items)
    assert not np.allclose(model.score([0], a), model.score([0], b))
    # Only the last max_len items matter.
    long = UserHistories.from_lists([list(range(30)) + [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]], model.n_items)
    short = UserHistories.from_lists([[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]], model.n_items)
    np.testing.assert_allclose(model.score([0], long), model.score([0], short), atol=1e-6)


@pytest.mark.parametrize("make", [
    lambda: SASRec(hidden=16, layers=1, max_len=10, train=tiny_train(epochs=2)),
    lambda: GRU4Rec(embedding=16, hidden=16, max_len=10, train=tiny_train(epochs=2)),
])
def test_user_and_item_vectors_reproduce_the_scores(synthetic, make):
    model = make().fit(synthetic.interactions)
    users = np.arange(7)
    expected = model.score(users)
    vectors = model.user_vectors(users) @ model.item_vectors().T
    np.testing.assert_allclose(vectors, expected, rtol=1e-4, atol=1e-4)
    empty = UserHistories.from_lists([[]], model.n_items)
    assert model.user_vectors([-1], empty).shape == (1, model.item_vectors().shape[1])


def test_text_initialised_item_table_projects_text(synthetic):
    class TextSASRec(SASRec):
        def item_text_embeddings(self):
            # one-hot genre as a stand-in "text embedding" (the encoder lives in recloop.text)
            return self.item_features_.categorical["genre"].matrix.toarray().astype(np.float32)

    parts = leave_one_out(synthetic.interactions)
    model = TextSASRec(hidden=16, layers=1, max_len=10, text_init=True, train=tiny_train(epochs=2))
    model.fit(parts.train, item_features=synthetic.item_features)
    text = model.item_text_embeddings()
    projected = model.text_to_item_vectors(text)
    assert projected.shape == (model.n_items, 16)
    items = model.network_.items
    ids = (items.embedding.weight[1:model.n_items + 1] * items.id_mask[1:model.n_items + 1, None]).detach().numpy()
    np.testing.assert_allclose(model.item_vectors(), ids + projected, atol=1e-5)
    with pytest.raises(ConfigError, match="without text"):
        SASRec(hidden=16, layers=1, max_len=10, train=tiny_train(epochs=1)).fit(parts.train).text_to_item_vectors(text)


def test_text_init_without_item_text_says_so(synthetic):
    parts = leave_one_out(synthetic.interactions)
    with pytest.raises(ConfigError, match="text_init"):
        SASRec(hidden=16, text_init=True, train=tiny_train(epochs=1)).fit(parts.train)


@pytest.mark.parametrize("bad, field", [
    ({"hidden": 30, "heads": 4}, "heads"),
    ({"loss": "bce"}, "loss"),
    ({"dropout": 1.5}, "dropout"),
    ({"negatives": "zipf"}, "negatives"),
    ({"train": {"epochs": 0}}, "train.epochs"),
    ({"train": {"schedule": "cosin"}}, "cosine"),
])
def test_bad_hyperparameters_name_the_field(bad, field):
    with pytest.raises(ConfigError, match=field):
        SASRec(**bad)


def test_network_forward_is_causal():
    model = SASRec(hidden=16, layers=2, max_len=8, dropout=0.0, attention_dropout=0.0)
    from recloop.models.sasrec import SASRecNetwork
    net = SASRecNetwork(20, model.config).eval()
    a = torch.tensor([[0, 0, 21, 3, 4, 5, 6, 7]])
    b = torch.tensor([[0, 0, 21, 3, 4, 9, 9, 9]])
    with torch.no_grad():
        np.testing.assert_allclose(net.encode(a)[:, :5].numpy(), net.encode(b)[:, :5].numpy(), atol=1e-6)


@pytest.mark.slow  # loads MiniLM
def test_text_init_encodes_item_text_with_the_text_encoder(synthetic, tmp_path, monkeypatch):
    pytest.importorskip("sentence_transformers")
    from recloop.text import TextEncoder

    monkeypatch.setattr("recloop.text.encoder.default_cache_dir", lambda: tmp_path)
    parts = leave_one_out(synthetic.interactions)
    model = SASRec(hidden=16, layers=1, max_len=10, text_init=True, train=tiny_train(epochs=1))
    model.fit(parts.train, item_features=synthetic.item_features)
    text = model.network_.items.text_embeddings
    assert text.shape == (model.n_items, TextEncoder().dim)
    model.save(tmp_path / "artifact")
    again = load_model(tmp_path / "artifact")
    np.testing.assert_array_equal(again.score(np.arange(5)), model.score(np.arange(5)))
