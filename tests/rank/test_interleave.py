"""Team-draft interleaving: the merge's invariants, and no bias for clicks that ignore quality."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from recloop.rank.interleave import TEAM_A, TEAM_B, credit, team_draft, winner


def test_merge_takes_each_teams_best_free_item_and_keeps_teams_balanced():
    rng = np.random.default_rng(0)
    for _ in range(200):
        a = rng.permutation(30)[:10]
        b = rng.permutation(30)[:10]
        items, teams = team_draft(a, b, 10, rng)
        assert len(items) == 10 and len(set(items.tolist())) == 10
        counts = np.bincount(teams, minlength=2)
        assert abs(counts[TEAM_A] - counts[TEAM_B]) <= 1
        for position, (item, team) in enumerate(zip(items, teams)):
            own = a if team == TEAM_A else b
            taken = set(items[:position].tolist())
            # the team's pick is its highest-ranked item not already in the list
            assert item == next(x for x in own if x not in taken)


def test_identical_lists_come_out_in_their_own_order():
    items, teams = team_draft([5, 4, 3, 2], [5, 4, 3, 2], 4, np.random.default_rng(1))
    assert items.tolist() == [5, 4, 3, 2]
    assert sorted(np.bincount(teams, minlength=2).tolist()) == [2, 2]


def test_a_short_list_lets_the_other_team_fill_and_ids_may_be_strings():
    items, teams = team_draft(["x"], ["y", "x", "z", "w"], 4, np.random.default_rng(2))
    assert sorted(items.tolist()) == ["w", "x", "y", "z"]
    assert (teams == TEAM_A).sum() == 1  # only "x" could come from the one-item list
    assert team_draft([], [], 3, np.random.default_rng(0))[0].size == 0
    with pytest.raises(ValueError, match="k must be"):
        team_draft([1], [2], 0, np.random.default_rng(0))


def test_credit_and_winner_by_hand():
    teams = np.array([TEAM_A, TEAM_B, TEAM_B, TEAM_A])
    assert credit(teams, [1, 2, 2]) == (0, 2)  # a position counts once
    assert credit(teams, [0, 9]) == (1, 0)  # out-of-range positions are ignored
    assert winner(teams, [1, 2]) == TEAM_B and winner(teams, [0]) == TEAM_A
    assert winner(teams, [0, 1]) is None and winner(teams, []) is None


def test_clicks_by_position_alone_favour_neither_team():
    """Radlinski et al.'s point: a user who clicks regardless of the items (here with
    the position bias 1/log2(pos + 1)) gives both rankers the same expected credit."""
    rng = np.random.default_rng(3)
    a, b = np.arange(20), np.arange(20)[::-1]
    examine = 1 / np.log2(np.arange(10) + 2)
    won = [0, 0]
    for _ in range(4000):
        _, teams = team_draft(a, b, 10, rng)
        result = winner(teams, np.flatnonzero(rng.random(10) < examine * 0.3))
        if result is not None:
            won[result] += 1
    assert stats.binomtest(won[0], sum(won)).pvalue > 0.01, won
