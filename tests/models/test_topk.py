import numpy as np
import torch

from recloop.models.base import stable_topk, stable_topk_row, top_k


def test_ties_are_broken_by_item_index_whatever_k():
    scores = torch.tensor([[1.0, 3.0, 3.0, 2.0, 3.0, 3.0]])
    _, top2 = stable_topk(scores, 2)
    _, top5 = stable_topk(scores, 5)
    assert top2.tolist() == [[1, 2]]
    assert top5.tolist() == [[1, 2, 4, 5, 3]]


def test_matches_a_stable_full_sort_on_tie_heavy_scores():
    generator = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 5, (64, 300), generator=generator).float()
    expected = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :17]
    assert torch.equal(stable_topk(scores, 17)[1], expected)


def test_masked_slots_become_minus_one():
    scores = torch.tensor([[0.5, -torch.inf, 0.1]])
    items, values = top_k(scores, 4)
    assert items.tolist() == [[0, 2, -1, -1]]


def test_the_one_row_form_ranks_as_the_batched_one():
    rng = np.random.default_rng(0)
    for trial in range(200):
        n = int(rng.integers(1, 80))
        k = int(rng.integers(1, n + 3))
        row = (rng.integers(0, 4, n) if trial % 2 else rng.random(n)).astype(np.float32)
        row[rng.random(n) < 0.1] = -np.inf
        expected = stable_topk(torch.from_numpy(row)[None, :], min(k, n))[1][0].numpy()
        np.testing.assert_array_equal(stable_topk_row(row, k), expected)
