"""The service knows the friend graph: a new user who names friends is answered at once
from what the friends have, a known user's friends come from the artifact, and the
reasons say "Popular among your friends"."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient
from serve_helpers import fast_service

from recloop.data import Interactions
from recloop.data.social import UserGraph
from recloop.errors import UnknownIdError
from recloop.models import EASE
from recloop.serve.app import create_app
from recloop.serve.settings import ServeSettings
from recloop.serve.social import SocialConfig


@pytest.fixture(scope="module")
def social_artifact(tmp_path_factory):
    """EASE on two taste groups: users 0-19 listen to items a0-a9, users 20-39 to b0-b9,
    everybody to the hub item; friends are users of the same group."""
    rng = np.random.default_rng(0)
    users, items = [], []
    for u in range(40):
        own = [f"a{i}" for i in range(10)] if u < 20 else [f"b{i}" for i in range(10)]
        for item in ["hub", *rng.choice(own, size=5, replace=False)]:
            users.append(f"u{u}")
            items.append(item)
    log = Interactions.from_ids(users, items)
    group = np.array([int(u[1:]) < 20 for u in log.users.ids])
    source, target = np.nonzero(group[:, None] == group[None, :])
    graph = UserGraph.from_index_pairs(log.users, source, target)
    model = EASE(l2=10.0).fit(log, user_graph=graph)
    return model.save(tmp_path_factory.mktemp("artifacts") / "social-ease")


@pytest.fixture
def client(social_artifact, tmp_path):
    settings = ServeSettings(artifact=str(social_artifact), db=str(tmp_path / "events.db"))
    with TestClient(create_app(settings, service_factory=fast_service)) as client:
        yield client


def test_a_new_user_who_names_friends_gets_their_music_at_once(client):
    response = client.post("/recommend", json={"user_id": "newcomer", "friends": ["u21", "u22", "u30"], "k": 5,
                                               "explain": True})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["source"] == "friends"
    listed = [item["item_id"] for item in body["items"]]
    # what all three friends have (the hub) first, then their group's items, none of the other group's
    assert listed[0] == "hub" and all(item.startswith("b") for item in listed[1:])
    assert body["items"][0]["reasons"][0] == "Popular among your friends (3 of 3)"
    assert all(item["reasons"][0].startswith("Popular among your friends (") for item in body["items"])


def test_the_same_new_user_without_friends_is_unknown(client):
    response = client.post("/recommend", json={"user_id": "newcomer", "k": 5})
    assert response.status_code == 404 and "newcomer" in response.text


def test_an_unknown_friend_is_named(client):
    response = client.post("/recommend", json={"user_id": "newcomer", "friends": ["u21", "nobody"]})
    assert response.status_code == 404 and "nobody" in response.text


def test_a_known_users_friends_come_from_the_artifact(make_service, social_artifact):
    service = make_service(social_artifact)
    model = service.state.model
    assert model.user_graph_ is not None and model.user_graph_.n_edges == 2 * (20 * 19 // 2)
    result = service.recommend(user_id="u3", k=5, explain=True)
    assert result.source == "model"  # six items of history: more than max_history, the usual path
    friends_reasons = [r.reasons[0] for r in result.items if r.reasons and "friends" in r.reasons[0]]
    assert friends_reasons and all(reason.endswith(" of 19)") for reason in friends_reasons)


def test_a_known_user_with_little_history_gets_the_friends_blend(make_service, social_artifact):
    service = make_service(social_artifact, social=SocialConfig(max_history=6, weight=1.0))
    result = service.recommend(user_id="u25", k=3)
    assert result.source == "friends"
    assert all(r.item_id.startswith("b") for r in result.items)


def test_friends_alone_need_the_graphs_users(make_service, social_artifact):
    service = make_service(social_artifact)
    with pytest.raises(UnknownIdError, match="ghost"):
        service.recommend(user_id="someone", friends=["ghost"])
    # an anonymous list with friends works too, and known items stay out
    result = service.recommend(items=["b0"], friends=["u20"], k=4)
    assert result.source == "friends" and "b0" not in [r.item_id for r in result.items]


def test_without_a_graph_friends_must_still_be_model_users(make_service, tmp_path):
    log = Interactions.from_ids(["x", "x", "y"], ["i1", "i2", "i1"])
    path = EASE(l2=1.0).fit(log).save(tmp_path / "plain")
    service = make_service(path)
    assert service.state.model.user_graph_ is None
    result = service.recommend(user_id="fresh", friends=["y"], k=2)
    assert result.source == "friends" and result.items[0].item_id in {"i1", "i2"}
