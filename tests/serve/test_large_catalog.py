"""What serving a large catalog relies on (benchmarks/serve_1m.py measures it at 1e6 items)."""

from __future__ import annotations

import gc


def test_a_loaded_model_is_left_out_of_full_garbage_collections(synthetic_artifact, make_service):
    # A full collection walks every tracked object; a 1e6-item model's id maps made that a
    # 110 ms stall. The loaded state is frozen, so collections never walk it.
    service = make_service(synthetic_artifact)
    state = service.state
    tracked = {id(o) for o in gc.get_objects()}
    assert gc.get_freeze_count() > 0
    assert id(state) not in tracked and id(state.model) not in tracked and id(state.model.items_) not in tracked


def test_an_als_model_is_served_from_an_index_not_scored_in_full(make_service, tmp_path):
    from recloop.data.synthetic import SyntheticConfig, generate
    from recloop.models import ALS

    data = generate(SyntheticConfig())
    model = ALS(factors=8, iterations=2).fit(data.interactions)
    service = make_service(model.save(tmp_path / "als"))
    assert service.state.retrieval.kind == "exact"  # an index over the item factors (faiss above 50k items)
    for user_idx in (0, 7):
        user = model.users_.to_list()[user_idx]
        served = [item.item_id for item in service.recommend(user, k=5).items]
        items, _ = model.recommend([user_idx], k=5)
        assert served == [model.items_.to_list()[i] for i in items[0]]
