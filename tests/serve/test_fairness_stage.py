"""Exposure-aware re-ranking in the service, per request and from the settings, over
HTTP: the quota holds on the list shown, calibration follows the user's history, the
settings' defaults apply, bad values are errors that name them."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from serve_helpers import fast_service

from recloop.rank.fairness import FairnessConfig, popularity_tiers
from recloop.serve.app import create_app
from recloop.serve.settings import ServeSettings, load_serve_settings


@pytest.fixture(scope="module")
def tiers(ml100k_artifact):
    """item_id -> "head"/"tail" of the served model's training log."""
    from recloop.artifact import load_artifact

    model = load_artifact(ml100k_artifact).model
    matrix = popularity_tiers(model.history_.item_counts()).matrix
    return {item_id: "tail" if matrix[i, 1] else "head" for i, item_id in enumerate(model.items_.ids)}


def _client(artifact, tmp_path, **options):
    settings = ServeSettings(artifact=str(artifact), db=str(tmp_path / "events.db"), **options)
    return TestClient(create_app(settings, service_factory=fast_service))


def test_exposure_quota_per_request_over_http(ml100k_artifact, tiers, tmp_path):
    with _client(ml100k_artifact, tmp_path) as client:
        plain = client.post("/recommend", json={"user_id": "1", "k": 10}).json()["items"]
        fair = client.post("/recommend", json={"user_id": "1", "k": 10, "exposure": {"tail": 0.3}}).json()["items"]
    plain_tail = sum(tiers[x["item_id"]] == "tail" for x in plain)
    shown = [tiers[x["item_id"]] for x in fair]
    assert plain_tail == 0  # EASE on ml-100k lists popular films only
    assert len(fair) == 10 and shown.count("tail") >= 3
    # spread over the ranks: at least floor(0.3 p) tail items among the first p
    assert all(shown[:p].count("tail") >= int(0.3 * p + 1e-9) for p in range(1, 11))
    # The head items kept are the model's best, in its order.
    head = [x["item_id"] for x in fair if tiers[x["item_id"]] == "head"]
    assert head == [x["item_id"] for x in plain][:len(head)]


def test_calibration_follows_the_users_history(ml100k_artifact, tiers, tmp_path):
    # An anonymous user whose history is half head, half tail films: calibrated on the
    # popularity tiers, half of the list is tail.
    head = [item for item, tier in tiers.items() if tier == "head"][:10]
    tail = [item for item, tier in tiers.items() if tier == "tail"][:10]
    history = [item for pair in zip(head, tail) for item in pair]
    with _client(ml100k_artifact, tmp_path, fairness=FairnessConfig(calibration_feature="popularity")) as client:
        plain = client.post("/recommend", json={"items": history, "k": 10}).json()["items"]
        calibrated = client.post("/recommend", json={"items": history, "k": 10, "calibration": 0.9}).json()["items"]
    share = [sum(tiers[x["item_id"]] == "tail" for x in answer) / 10 for answer in (plain, calibrated)]
    assert share[1] == pytest.approx(0.5, abs=0.1)
    assert abs(share[0] - 0.5) > abs(share[1] - 0.5)


def test_genre_calibration_and_settings_defaults(ml100k_artifact, tmp_path):
    settings_file = tmp_path / "serve.toml"
    settings_file.write_text('[fairness]\nmin_share = {tail = 0.2}\ncalibration = 0.5\ncalibration_feature = "genre"\n')
    settings = load_serve_settings(settings_file, artifact=str(ml100k_artifact), db=str(tmp_path / "e.db"))
    assert settings.fairness == FairnessConfig(calibration=0.5, calibration_feature="genre", min_share={"tail": 0.2})
    with TestClient(create_app(settings, service_factory=fast_service)) as client:
        default = client.post("/recommend", json={"user_id": "7", "k": 10}).json()["items"]
        off = client.post("/recommend", json={"user_id": "7", "k": 10, "calibration": 0,
                                              "exposure": {}}).json()["items"]
    assert [x["item_id"] for x in default] != [x["item_id"] for x in off]
    scores = [x["score"] for x in off]
    assert scores == sorted(scores, reverse=True)  # off: the model's order


def test_diversity_orders_the_fair_list(ml100k_artifact, tiers, tmp_path):
    with _client(ml100k_artifact, tmp_path) as client:
        fair = client.post("/recommend", json={"user_id": "1", "k": 10, "exposure": {"tail": 0.3}}).json()["items"]
        both = client.post("/recommend", json={"user_id": "1", "k": 10, "exposure": {"tail": 0.3},
                                               "diversity": 0.8}).json()["items"]
    assert {x["item_id"] for x in both} == {x["item_id"] for x in fair}  # fairness chose the items


@pytest.mark.parametrize(("body", "status", "message"), [
    ({"user_id": "1", "calibration": 1.5}, 422, "calibration: Input should be less than or equal to 1"),
    ({"user_id": "1", "exposure": {"tail": 0.7, "head": 0.7}}, 422, "add up to 1.4"),
    ({"user_id": "1", "exposure": {"tial": 0.3}}, 400, "did you mean 'tail'"),
])
def test_bad_fairness_values_name_the_problem(ml100k_artifact, tmp_path, body, status, message):
    with _client(ml100k_artifact, tmp_path) as client:
        response = client.post("/recommend", json=body)
    assert response.status_code == status, response.text
    assert message in response.json()["detail"]


def test_calibration_on_a_missing_feature_is_a_clear_error(synthetic_artifact, tmp_path):
    with _client(synthetic_artifact, tmp_path, fairness=FairnessConfig(calibration_feature="brand")) as client:
        response = client.post("/recommend", json={"user_id": "u1", "calibration": 0.5})
    assert response.status_code == 400 and "brand" in response.json()["detail"]
