"""RecommendationService: the live loop without the web layer."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pytest
from serve_helpers import hashing_embedder

from recloop.artifact import load_artifact
from recloop.data.interactions import Interactions, UserHistories
from recloop.errors import UnknownIdError
from recloop.models import UNKNOWN_USER, Recommender
from recloop.serve.coldstart import quantile_match
from recloop.serve.events import Event, EventPolicy
from recloop.serve.rerank import RerankConfig
from recloop.serve.retrain import retrain
from recloop.serve.service import InvalidRequestError, ItemExistsError
from recloop.serve.settings import Limits


def ids(result) -> list[str]:
    return [r.item_id for r in result.items]


def model_top(model, user_idx: int, k: int, history_items=None) -> list[str]:
    history = None
    if history_items is not None:
        history = UserHistories.from_lists([model.items_.indices(history_items)], model.n_items)
    items, _ = model.recommend([user_idx], k, history=history)
    return [model.items_.id(i) for i in items[0] if i >= 0]


def training_items(model, user_id: str) -> list[str]:
    row = model.history_.histories(np.asarray([model.users_.index(user_id)]))
    return [model.items_.id(i) for i in row.item_idx]


def test_known_user_gets_the_models_top_k(make_service, synthetic_artifact):
    service = make_service(synthetic_artifact)
    model = service.state.model
    result = service.recommend(user_id="u3", k=10)
    assert ids(result) == model_top(model, model.users_.index("u3"), 10)
    _, scores = model.recommend([model.users_.index("u3")], 10)
    np.testing.assert_allclose([r.score for r in result.items], scores[0], rtol=1e-5)
    assert result.source == "model" and result.model == "ease" and result.generation == 0
    assert all(r.title for r in result.items)  # titles come from the item features


def test_a_click_changes_the_next_answer(make_service, synthetic_artifact, store_url):
    service = make_service(synthetic_artifact, db=store_url)
    model = service.state.model
    before = service.recommend(user_id="u3", k=10)
    clicked = before.items[0].item_id
    assert service.record_events([Event("u3", clicked, "click")]) == 1
    after = service.recommend(user_id="u3", k=10)
    assert clicked not in ids(after)
    # Exactly what the model says for the longer history, folded in as an unknown user.
    assert ids(after) == model_top(model, UNKNOWN_USER, 10, training_items(model, "u3") + [clicked])


def test_a_new_user_is_scored_from_their_events(make_service, synthetic_artifact):
    service = make_service(synthetic_artifact)
    with pytest.raises(UnknownIdError, match="'visitor'"):
        service.recommend(user_id="visitor")
    service.record_events([Event("visitor", "i7", "click"), Event("visitor", "i30", "purchase")])
    result = service.recommend(user_id="visitor", k=8)
    assert ids(result) == model_top(service.state.model, UNKNOWN_USER, 8, ["i7", "i30"])
    assert {"i7", "i30"}.isdisjoint(ids(result))


def test_views_skips_and_low_ratings_exclude_but_teach_nothing(make_service, synthetic_artifact):
    service = make_service(synthetic_artifact)
    before = ids(service.recommend(user_id="u3", k=12))
    service.record_events([Event("u3", before[0], "skip"), Event("u3", before[1], "view"),
                           Event("u3", before[2], "rate", 2.0)])
    after = ids(service.recommend(user_id="u3", k=9))
    assert after == before[3:12]  # the same scores, minus the three items met
    service.record_events([Event("u3", before[3], "rate", 5.0)])  # at the threshold or above: positive
    model = service.state.model
    expected = model_top(model, UNKNOWN_USER, 20, training_items(model, "u3") + [before[3]])
    assert ids(service.recommend(user_id="u3", k=9)) == [x for x in expected if x not in before[:3]][:9]
    liked = service.state.user_view("u3")
    assert model.items_.index(before[3]) in liked.positives and model.items_.index(before[0]) not in liked.positives


def test_anonymous_recent_items(make_service, synthetic_artifact):
    service = make_service(synthetic_artifact)
    result = service.recommend(items=["i3", "i9"], k=5)
    assert ids(result) == model_top(service.state.model, UNKNOWN_USER, 5, ["i3", "i9"])
    popular = service.recommend(items=[], k=5)  # no signal at all: most popular
    counts = service.state.model.history_.item_counts()
    assert popular.source == "popularity"
    assert [r.score for r in popular.items] == sorted(counts, reverse=True)[:5]


def test_unknown_ids_are_named(make_service, synthetic_artifact):
    service = make_service(synthetic_artifact)
    with pytest.raises(UnknownIdError, match="unknown item id 'zz'"):
        service.recommend(items=["i1", "zz"])
    with pytest.raises(UnknownIdError, match="'nope'"):
        service.recommend(user_id="u1", exclude=["nope"])
    with pytest.raises(UnknownIdError, match="'nope'"):
        service.similar("nope")
    with pytest.raises(UnknownIdError, match="'ghost'"):
        service.record_events([Event("u1", "i1", "click"), Event("u1", "ghost", "click")])
    assert service.store.count() == 0  # a batch with one bad event stores nothing


def test_request_limits_and_bad_values(make_service, synthetic_artifact):
    service = make_service(synthetic_artifact, limits=Limits(max_k=20, max_list=3, max_batch=2))
    with pytest.raises(InvalidRequestError, match="k must be between 1 and 20, got 21"):
        service.recommend(user_id="u1", k=21)
    with pytest.raises(InvalidRequestError, match="exclude has 4 entries; the limit is 3"):
        service.recommend(user_id="u1", exclude=["i1", "i2", "i3", "i4"])
    with pytest.raises(InvalidRequestError, match="3 events in one request; the limit is 2"):
        service.record_events([Event("u1", "i1", "click")] * 3)
    with pytest.raises(InvalidRequestError, match="needs a value"):
        service.record_events([Event("u1", "i1", "rate")])
    with pytest.raises(InvalidRequestError, match="unknown event type 'like'"):
        service.record_events([Event("u1", "i1", "like")])
    with pytest.raises(InvalidRequestError, match="user_id or items"):
        service.recommend(user_id="u1", items=["i1"])
    with pytest.raises(InvalidRequestError, match="unknown genre 'spaec'.*did you mean 'space'"):
        service.recommend(user_id="u1", filters={"genre": ["spaec"]})
    with pytest.raises(InvalidRequestError, match="unknown item feature 'colour'"):
        service.recommend(user_id="u1", filters={"colour": ["red"]})


def test_exclusions_and_filters(make_service, synthetic_artifact):
    service = make_service(synthetic_artifact)
    top = ids(service.recommend(user_id="u3", k=5))
    assert top[:2] != ids(service.recommend(user_id="u3", k=5, exclude=top[:2]))[:2]
    assert set(top[:2]).isdisjoint(ids(service.recommend(user_id="u3", k=5, exclude=top[:2])))
    result = service.recommend(user_id="u3", k=10, filters={"genre": ["love", "war"]})
    genres = [service.item(i)["features"]["genre"][0] for i in ids(result)]
    assert len(genres) == 10 and set(genres) <= {"love", "war"}


def test_diversity_spreads_the_list_over_genres(make_service, synthetic_artifact):
    service = make_service(synthetic_artifact, rerank=RerankConfig(similarity="categories"))

    def genres(result):
        return [service.item(i)["features"]["genre"][0] for i in ids(result)]

    plain = genres(service.recommend(user_id="u3", k=6))
    diverse = genres(service.recommend(user_id="u3", k=6, diversity=1.0))
    assert len(set(diverse)) > len(set(plain))
    assert len(set(diverse)) == 6  # 6 genres in the catalog, one each
    with pytest.raises(InvalidRequestError, match="diversity"):
        service.recommend(user_id="u3", diversity=1.5)


def test_exposure_cap(make_service, synthetic_artifact):
    service = make_service(synthetic_artifact, rerank=RerankConfig(max_per_category=2))
    result = service.recommend(user_id="u3", k=8)
    genres = [service.item(i)["features"]["genre"][0] for i in ids(result)]
    assert max(genres.count(g) for g in set(genres)) <= 2


def test_a_new_item_is_recommendable_at_once_and_similar(make_service, synthetic_artifact):
    service = make_service(synthetic_artifact)
    catalog = service.state.catalog
    seed = "i46"
    title = catalog.title(catalog.index(seed))  # the new item's text shares the seed's words
    genre = service.item(seed)["features"]["genre"]
    info = service.add_item("new-1", f"{title} sequel", {"genre": genre}, title="The Sequel")
    assert info == {"item_id": "new-1", "title": "The Sequel", "cold": True, "features": {"genre": genre}}
    similar = service.similar(seed, k=5)
    assert "new-1" in ids(similar)
    anonymous = service.recommend(items=[seed], k=5)
    assert "new-1" in ids(anonymous)
    assert ids(service.similar("new-1", k=3))[0] == seed  # content similarity from the cold side too
    # On the model's scale: between the user's lowest and highest model scores.
    model_scores = service.state.model.score([UNKNOWN_USER], UserHistories.from_lists(
        [[service.state.model.items_.index(seed)]], service.state.model.n_items))[0]
    cold_score = next(r.score for r in anonymous.items if r.item_id == "new-1")
    assert model_scores.min() <= cold_score <= model_scores.max()
    # A user who clicks it: excluded at once, and it shapes their content profile.
    service.record_events([Event("fan", "new-1", "click")])
    fan = service.recommend(user_id="fan", k=5)
    assert fan.source == "content" and "new-1" not in ids(fan) and seed in ids(fan)[:2]
    with pytest.raises(ItemExistsError, match="'new-1' already exists"):
        service.add_item("new-1", "again")
    with pytest.raises(ItemExistsError):
        service.add_item("i1", "a catalog id")
    with pytest.raises(InvalidRequestError, match="unknown genre"):
        service.add_item("new-2", "text", {"genre": ["nope"]})
    with pytest.raises(InvalidRequestError, match="non-empty text"):
        service.add_item("new-3", "  ")


def test_quantile_match_puts_cosines_on_the_model_scale():
    reference = np.array([0.1, 0.2, 0.3, 0.4])  # catalog cosines
    target = np.array([-2.0, 0.0, 2.0, 4.0, 6.0])  # the user's model scores
    out = quantile_match(np.array([0.05, 0.25, 0.45]), reference, target)
    np.testing.assert_allclose(out, [-2.0, 2.0, 6.0])  # quantiles 0, 0.5, 1
    assert list(out) == sorted(out)


@dataclass(frozen=True)
class TextVectorConfig:
    dim: int = 8


class TextVectorModel(Recommender):
    """A vector model with the text capability: item vectors from a fixed random map of
    item text embeddings, user vectors = mean of history item vectors."""

    name = "text-vector-test"
    config_class = TextVectorConfig

    def _fit(self, train: Interactions, valid) -> None:
        rng = np.random.default_rng(0)
        self.map_ = rng.normal(size=(64, self.config.dim)).astype(np.float32)
        texts = self.item_features_.texts()
        self.item_vectors_ = self.text_to_item_vectors(hashing_embedder(texts))

    def text_to_item_vectors(self, embeddings):
        return np.asarray(embeddings, dtype=np.float32) @ self.map_

    def item_vectors(self):
        return self.item_vectors_

    def user_vectors(self, user_idx, history):
        x = history.to_csr()
        counts = np.maximum(np.asarray(x.sum(axis=1)), 1.0)
        return np.asarray(x @ self.item_vectors_ / counts, dtype=np.float32)

    def _score(self, user_idx, history):
        return self.user_vectors(user_idx, history) @ self.item_vectors_.T

    def _get_state(self):
        return {"map": self.map_, "item_vectors": self.item_vectors_}

    def _set_state(self, state):
        self.map_, self.item_vectors_ = state["map"], state["item_vectors"]


def test_models_with_text_vectors_score_new_items_themselves(make_service, tmp_path, monkeypatch):
    from recloop.data import SyntheticConfig, generate
    from recloop.models import MODELS

    monkeypatch.setitem(MODELS, TextVectorModel.name, TextVectorModel)
    data = generate(SyntheticConfig(n_users=100, n_items=60, n_clusters=4, seed=2))
    path = TextVectorModel().fit(data.interactions, item_features=data.item_features).save(tmp_path / "tv")
    service = make_service(path)
    assert service.health()["cold_start"] == "model" and service.health()["retrieval"] == "exact"
    service.add_item("cold", "space galaxy rocket", title="Cold")
    result = service.recommend(items=["i1", "i2"], k=61)
    model = service.state.model
    history = UserHistories.from_lists([model.items_.indices(["i1", "i2"])], model.n_items)
    from recloop.serve.coldstart import normalise

    expected = float(model.user_vectors([UNKNOWN_USER], history)[0]
                     @ model.text_to_item_vectors(normalise(hashing_embedder(["Cold. space galaxy rocket"])))[0])
    got = {r.item_id: r.score for r in result.items}
    assert got["cold"] == pytest.approx(expected, rel=1e-5)
    assert len(got) == 59  # 60 items + 1 cold - 2 known


def test_every_process_sees_every_event_and_item(make_service, synthetic_artifact, store_url):
    """Two services on one store stand for two worker processes."""
    first = make_service(synthetic_artifact, db=store_url)
    second = make_service(synthetic_artifact, db=store_url)
    top = ids(second.recommend(user_id="u5", k=3))
    first.record_events([Event("u5", top[0], "click")])
    assert top[0] not in ids(second.recommend(user_id="u5", k=3))
    first.add_item("shared-new", "dragon magic wizard quest", {"genre": ["dragon"]})
    assert second.item("shared-new")["cold"] is True
    second.record_events([Event("u5", "shared-new", "click")])  # an item another process added
    assert "shared-new" not in ids(first.recommend(user_id="u5", k=100))
    assert "shared-new" in first.state.catalog.ids(first.state.user_view("u5").known)


def test_retrain_folds_events_and_reload_swaps_without_double_counting(make_service, synthetic_artifact, tmp_path):
    service = make_service(synthetic_artifact)
    follower = make_service(synthetic_artifact)
    service.add_item("fresh", "space galaxy rocket alien", {"genre": ["space"]}, title="Fresh")
    service.add_item("unloved", "war battle army", {"genre": ["war"]})
    service.record_events([
        Event("u1", "i1", "click"), Event("newcomer", "i2", "purchase"), Event("newcomer", "fresh", "click"),
        Event("u2", "i3", "rate", 5.0), Event("u2", "i4", "rate", 2.0), Event("u2", "i5", "view"),
        Event("u2", "i6", "skip"), Event("u2", "unloved", "view")])
    path, stats = retrain(synthetic_artifact, service.store, tmp_path / "retrained", EventPolicy())
    assert (stats.events, stats.positives, stats.new_users, stats.new_items) == (8, 4, 1, 1)
    assert stats.events_through == service.store.head().last_event_id
    new = load_artifact(path)
    old = load_artifact(synthetic_artifact).model
    assert len(new.model.history_) == len(old.history_) + 4
    assert "newcomer" in new.model.users_ and "fresh" in new.model.items_ and "unloved" not in new.model.items_
    assert new.model.item_features_.text["title"][new.model.items_.index("fresh")] == "Fresh"
    assert new.extra["events_through"] == stats.events_through
    assert new.extra["retrain"]["positives"] == 4

    service.record_events([Event("late", "i9", "click")])  # after the retrain's mark
    answer = service.reload(path)
    assert answer["generation"] == 1 and answer["events_through"] == stats.events_through
    state = service.state
    assert state.model.users_.index("newcomer") >= 0 and state.catalog.is_cold(state.catalog.index("unloved"))
    assert set(state.users) == {"late"}  # events up to the mark live in the model now, not replayed
    assert ids(service.recommend(user_id="newcomer", k=5)) == model_top(
        new.model, new.model.users_.index("newcomer"), 5)
    # The other process follows the reload on its next request.
    follower.recommend(user_id="u1")
    deadline = time.time() + 30
    while follower.state.generation != 1 and time.time() < deadline:
        time.sleep(0.05)
        follower.sync()
    assert follower.state.path == path and set(follower.state.users) == {"late"}


def test_events_through_of_another_store_skips_nothing(make_service, synthetic_artifact, tmp_path):
    """An artifact retrained through event N of store A, served on store B: B's first N
    events are replayed, not skipped (B's ids say nothing about A's)."""
    first = make_service(synthetic_artifact, db=tmp_path / "a.db")
    first.record_events([Event("u1", "i1", "click"), Event("u1", "i2", "click"), Event("u1", "i3", "click")])
    path, stats = retrain(synthetic_artifact, first.store, tmp_path / "retrained", EventPolicy())
    assert stats.events_through == 3 and load_artifact(path).extra["events_store"] == first.store.store_id
    other = make_service(path, db=tmp_path / "b.db")
    assert other.store.store_id != first.store.store_id
    other.record_events([Event("fresh-user", "i4", "click"), Event("fresh-user", "i5", "click")])
    assert other.sync().users["fresh-user"].n_events == 2
    restarted = make_service(path, db=tmp_path / "b.db")  # a restart replays B's events from its first
    assert restarted.state.users["fresh-user"].n_events == 2
    same = make_service(path, db=tmp_path / "a.db")  # A's own events up to the mark are in the model
    assert "u1" not in same.state.users
    # And a retrain from B folds B's events in full, starting from B's first.
    again, stats_b = retrain(path, other.store, tmp_path / "again", EventPolicy())
    assert stats_b.events == 2 and load_artifact(again).extra["events_store"] == other.store.store_id


def test_default_store_is_one_per_artifact_folder(tmp_path, monkeypatch):
    from recloop.serve.store import default_db_path

    monkeypatch.setenv("RECLOOP_HOME", str(tmp_path / "home"))
    a, b = default_db_path(tmp_path / "runs" / "ease"), default_db_path(tmp_path / "other" / "ease")
    assert a != b and a.parent == b.parent == tmp_path / "home" / "events" and a.name.startswith("ease-")
    assert default_db_path(tmp_path / "runs" / "ease" / ".") == a  # the folder, however it is written
    assert default_db_path() == tmp_path / "home" / "events.db"


def test_reasons_name_the_history_item_and_shared_genres(make_service, synthetic_artifact):
    service = make_service(synthetic_artifact)
    service.record_events([Event("reader", "i46", "click")])
    result = service.recommend(user_id="reader", k=3, explain=True)
    title = service.state.catalog.title(service.state.catalog.index("i46"))
    for item in result.items:
        assert item.reasons[0] == f"Because you watched {title}"
    assert any(r.startswith("Shared genres: space") for item in result.items for r in item.reasons)
    assert all(item.reasons == [] for item in service.recommend(user_id="reader", k=3).items)  # only when asked
    service.add_item("cold-reason", f"{title} again", {"genre": ["space"]}, title="Cold")
    cold = next(r for r in service.recommend(user_id="reader", k=20, explain=True).items if r.item_id == "cold-reason")
    assert cold.reasons == [f"Because you watched {title}", "Shared genres: space"]  # from text similarity


def test_epsilon_exploration_swaps_in_lower_candidates(make_service, synthetic_artifact):
    from recloop.serve.explore import ExploreConfig

    plain = ids(make_service(synthetic_artifact).recommend(user_id="u3", k=5))
    service = make_service(synthetic_artifact, explore=ExploreConfig(method="epsilon", epsilon=1.0))
    result = service.recommend(user_id="u3", k=5)
    assert all(r.explored for r in result.items) and set(ids(result)).isdisjoint(plain)
    unexplored = service.recommend(user_id="u3", k=5, explore=False)  # a request can opt out
    assert ids(unexplored) == plain and not any(r.explored for r in unexplored.items)


def test_the_bandit_learns_from_logged_clicks(make_service, synthetic_artifact):
    from recloop.serve.explore import ExploreConfig

    service = make_service(synthetic_artifact, explore=ExploreConfig(method="ucb", alpha=0.0, score_weight=1.0))
    before = service.recommend(user_id="u3", k=5)
    assert ids(before) == ids(service.recommend(user_id="u3", k=5, explore=False))  # nothing learnt yet
    known = set(service.state.catalog.ids(service.state.user_view("u3").known))
    candidates = ids(service.recommend(user_id="u3", k=60, explore=False))
    hit = next(i for i in candidates[20:] if i not in known)  # a candidate far below the top 5
    service.record_events([Event(f"crowd{n}", hit, "click") for n in range(30)])
    after = service.recommend(user_id="u3", k=5)
    assert ids(after)[0] == hit and after.items[0].explored
    assert service.pipeline.explorer.bandit.n_arms == 1
    service.record_events([Event(f"crowd{n}", candidates[0], "skip") for n in range(3)])  # reward 0
    service.sync()  # events are learnt as the service tails the store
    assert service.pipeline.explorer.bandit.n_arms == 2


def test_watching_the_artifact_reloads_it_when_replaced(make_service, synthetic_artifact, tmp_path):
    import shutil

    served = tmp_path / "served"
    shutil.copytree(synthetic_artifact, served)
    service = make_service(served, watch=0.1)
    service.record_events([Event("watcher", "i2", "click")])
    retrain(served, service.store, served)  # written in place, atomically
    deadline = time.time() + 30
    while service.state.generation == 0 and time.time() < deadline:
        time.sleep(0.05)
    assert service.state.generation == 1 and "watcher" in service.state.model.users_
    assert service.state.users == {}  # the event is in the model now, not replayed


@pytest.mark.parametrize("model", ["ease", "vectors"])
def test_batched_scoring_equals_one_at_a_time(make_service, synthetic_artifact, tmp_path, monkeypatch, model):
    import asyncio

    from recloop.serve.service import RecommendBatcher

    path = synthetic_artifact
    if model == "vectors":
        from recloop.data import SyntheticConfig, generate
        from recloop.models import MODELS

        monkeypatch.setitem(MODELS, TextVectorModel.name, TextVectorModel)
        data = generate(SyntheticConfig(n_users=100, n_items=60, n_clusters=4, seed=2))
        path = TextVectorModel().fit(data.interactions, item_features=data.item_features).save(tmp_path / "tv")
    service = make_service(path)
    service.record_events([Event("u1", "i3", "click"), Event("guest", "i4", "click")])
    service.add_item("cold", "space galaxy rocket", {"genre": [service.features()["genre"][0]]})
    asks = [{"user_id": "u1", "k": 5}, {"user_id": "guest", "k": 7, "explain": True}, {"items": ["i2", "i9"], "k": 4},
            {"items": [], "k": 3}, {"user_id": "u2", "k": 6, "exclude": ["i1"]},
            {"user_id": "u3", "k": 5, "filters": {"genre": [service.features()["genre"][1]]}},
            {"user_id": "u4", "k": 5, "diversity": 0.5}]
    alone = [service.recommend(**ask) for ask in asks]
    batched = service.recommend_batch([service.prepare(**ask) for ask in asks])
    for ask, a, b in zip(asks, alone, batched):
        assert [(r.item_id, r.reasons) for r in a.items] == [(r.item_id, r.reasons) for r in b.items], (
            ask, [(r.item_id, r.score) for r in a.items], [(r.item_id, r.score) for r in b.items])
        np.testing.assert_allclose([r.score for r in a.items], [r.score for r in b.items], rtol=1e-5)

    batcher = RecommendBatcher(service)

    async def concurrently():
        return await asyncio.gather(*(batcher.recommend(**ask) for ask in asks))

    together = asyncio.run(concurrently())
    assert [ids(a) for a in together] == [ids(a) for a in alone]
    assert batcher.batches == 1 and batcher.requests == len(asks)  # one model call for all of them

    async def with_a_bad_one():
        return await asyncio.gather(batcher.recommend(user_id="u1"), batcher.recommend(user_id="nobody"),
                                    return_exceptions=True)

    good, bad = asyncio.run(with_a_bad_one())
    assert ids(good) == ids(service.recommend(user_id="u1")) and isinstance(bad, UnknownIdError)


# --- one candidate path: exact and faiss, through the service -------------------------------------
@pytest.fixture
def vector_artifact(tmp_path, monkeypatch):
    """A vector model (item vectors, user vectors, text to item vectors) on a small
    synthetic log with genres."""
    from recloop.data import SyntheticConfig, generate
    from recloop.models import MODELS

    monkeypatch.setitem(MODELS, TextVectorModel.name, TextVectorModel)
    data = generate(SyntheticConfig(n_users=200, n_items=150, n_clusters=5, mean_interactions=12, seed=3))
    return TextVectorModel(dim=16).fit(data.interactions, item_features=data.item_features).save(tmp_path / "tv")


def test_faiss_index_serves_like_exact_search(make_service, vector_artifact, tmp_path):
    pytest.importorskip("faiss")
    from recloop.rank.index import ExactIndex, FaissIndex, RetrievalConfig

    exact = make_service(vector_artifact, db=tmp_path / "exact.db")
    hnsw = make_service(vector_artifact, db=tmp_path / "hnsw.db",
                        retrieval=RetrievalConfig(index="hnsw", hnsw_m=16, hnsw_ef_search=200))
    assert isinstance(exact.state.retrieval.index, ExactIndex) and exact.health()["retrieval"] == "exact"
    assert isinstance(hnsw.state.retrieval.index, FaissIndex) and hnsw.health()["retrieval"] == "hnsw"
    model = exact.state.model
    genre = exact.features()["genre"][0]
    overlap = []
    for user in model.users_.ids[:30]:
        a, b = exact.recommend(user_id=str(user), k=10), hnsw.recommend(user_id=str(user), k=10)
        overlap.append(len(set(ids(a)) & set(ids(b))) / 10)
        assert not set(ids(b)) & set(training_items(model, str(user)))  # known items never come back
        filtered = hnsw.recommend(user_id=str(user), k=5, filters={"genre": [genre]}, exclude=ids(b)[:2])
        assert all(genre in hnsw.item(i)["features"]["genre"] for i in ids(filtered))
        assert not set(ids(filtered)) & set(ids(b)[:2])
    assert np.mean(overlap) >= 0.95  # HNSW with a wide beam: the exact answer, near enough
    # Items added while serving: placed in both indexes by the model's text map.
    seed = "i7"
    title = hnsw.item(seed)["title"]
    for service in (exact, hnsw):
        service.add_item("cold-1", f"{title} sequel", {"genre": hnsw.item(seed)["features"]["genre"]})
    assert len(hnsw.state.retrieval.index) == len(exact.state.retrieval.index) == model.n_items + 1
    genres = {"genre": hnsw.item(seed)["features"]["genre"]}  # every item of the seed's genres fits in k
    a, b = exact.recommend(items=[seed], k=100, filters=genres), hnsw.recommend(items=[seed], k=100, filters=genres)
    assert "cold-1" in ids(b) and ids(a) == ids(b)
    assert next(r.score for r in b.items if r.item_id == "cold-1") == pytest.approx(
        next(r.score for r in a.items if r.item_id == "cold-1"), rel=1e-5)


def test_catalog_growth_during_filtered_requests_never_fails(make_service, synthetic_artifact):
    """POST /items while filtered /recommend requests run: each request answers from one
    catalog snapshot (before: IndexError, the mask built before the catalog grew)."""
    import threading

    service = make_service(synthetic_artifact)
    genres = service.features()["genre"]
    users = [str(u) for u in service.state.model.users_.ids[:20]]
    errors: list[BaseException] = []
    stop = threading.Event()
    answered = [0]

    def recommend(worker: int):
        r = worker
        while not stop.is_set():
            r += 1
            try:
                if r % 3 == 0:
                    result = service.recommend(items=["i1", "i2"], k=10, filters={"genre": [genres[r % len(genres)]]},
                                               explain=True)
                elif r % 3 == 1:
                    result = service.recommend(user_id=users[r % len(users)], k=10, diversity=0.3,
                                               filters={"genre": genres[:2]}, explain=True)
                else:
                    result = service.similar("i3", k=10, filters={"genre": genres[:3]})
                assert all(item.item_id for item in result.items)
                answered[0] += 1
            except BaseException as error:  # noqa: BLE001 - collected: a thread's exception is otherwise lost
                errors.append(error)
                return

    threads = [threading.Thread(target=recommend, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    try:
        for n in range(60):
            service.add_item(f"new-{n}", f"space galaxy story {n}", {"genre": [genres[n % len(genres)]]},
                             title=f"New {n}")
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert not errors, errors[:1]
    assert answered[0] > 20 and len(service.state.catalog) == service.state.catalog.n_model + 60


def test_a_request_answers_from_the_catalog_snapshot_it_read(make_service, synthetic_artifact):
    """The race made deterministic: a query resolved, then an item added, then scored."""
    service = make_service(synthetic_artifact)
    genre = service.features()["genre"][0]
    state, query = service.prepare(items=["i1"], k=5, filters={"genre": [genre]})
    service.add_item("late", "space galaxy rocket", {"genre": [genre]})
    result = service.recommend_batch([(state, query)])[0]
    assert len(result.items) == 5 and "late" not in ids(result)
    assert len(query.allowed) == len(query.catalog) == len(service.state.catalog) - 1


# --- explanations and search ----------------------------------------------------------------------
def test_similar_items_reasons_do_not_pretend_a_user(make_service, synthetic_artifact):
    service = make_service(synthetic_artifact)
    seed = "i46"
    title = service.item(seed)["title"]
    result = service.similar(seed, k=5, explain=True)
    reasons = [r for item in result.items for r in item.reasons]
    assert reasons and not any(r.startswith("Because you") for r in reasons)
    assert all(item.reasons[0] == f"Similar to {title}" for item in result.items if item.reasons)
    seed_genres = set(service.item(seed)["features"]["genre"])
    for item in result.items:
        for reason in item.reasons[1:]:  # the genres shared with the seed, not anyone's profile
            shared = set(reason.removeprefix("Shared genres: ").split(", "))
            assert shared <= seed_genres & set(service.item(item.item_id)["features"]["genre"])


def test_search_marks_what_the_user_already_has(make_service, synthetic_artifact):
    service = make_service(synthetic_artifact)
    model = service.state.model
    user = str(model.users_.ids[0])
    had = training_items(model, user)[0]
    title = service.item(had)["title"]
    service.record_events([Event(user, "i99", "click")])
    results = service.search(title, user_id=user)
    assert {"item_id": had, "known": True}.items() <= next(r for r in results if r["item_id"] == had).items()
    assert all(r["known"] == (r["item_id"] in set(training_items(model, user)) | {"i99"}) for r in results)
    assert next(r for r in service.search(service.item("i99")["title"], user_id=user)
                if r["item_id"] == "i99")["known"]
    assert "known" not in service.search(title)[0]  # no user, nothing to mark
    with pytest.raises(UnknownIdError):
        service.search(title, user_id="nobody")
