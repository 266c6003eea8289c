import torch

from recloop.models.base import stable_topk, top_k


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
