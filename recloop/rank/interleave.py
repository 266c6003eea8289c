"""Team-draft interleaving of two ranked lists, and the credit each team gets from clicks
(arrays in, arrays out).

Radlinski, Kurup and Joachims, "How Does Clickthrough Data Reflect Retrieval Quality?",
CIKM 2008, section 5 (team-draft): like captains picking players, in each round the two
rankers, in a random order, each add their highest-ranked item not yet in the merged
list; every item remembers the team that picked it. A click credits the item's team;
the ranker whose team got more clicks in an impression wins it. Because each team's
items are its own top items and a coin decides who goes first in each round, a user who
clicks at random, or by position alone, gives both teams the same expected credit.

Departure: the paper flips a coin once per round; here, as in its pseudo-code, the team
with fewer picks goes next and the coin decides only ties, which is the same thing (teams
stay within one pick of each other). When one list runs out (a filter left it short),
the other keeps picking, so the merged list is as long as the two allow.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: ``teams`` values: which input list an item of the merged list came from.
TEAM_A, TEAM_B = 0, 1


def team_draft(a: Sequence[int] | np.ndarray, b: Sequence[int] | np.ndarray, k: int,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Merge ranked lists ``a`` and ``b`` (item ids or indices, best first, no repeats
    within a list) into at most ``k`` items: ``(items, teams)``, each ``(n,)``, with
    ``teams[i]`` ``TEAM_A`` or ``TEAM_B``. Both lists need ``k`` items to fill a list
    of ``k`` whatever the overlap."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    lists = (np.asarray(a).reshape(-1), np.asarray(b).reshape(-1))
    cursor = [0, 0]
    picks = [0, 0]
    taken: set = set()
    items: list = []
    teams: list[int] = []

    def next_free(team: int):
        values = lists[team]
        while cursor[team] < len(values) and values[cursor[team]].item() in taken:
            cursor[team] += 1
        return values[cursor[team]].item() if cursor[team] < len(values) else None

    while len(items) < k:
        if picks[TEAM_A] != picks[TEAM_B]:
            first = TEAM_A if picks[TEAM_A] < picks[TEAM_B] else TEAM_B
        else:
            first = TEAM_A if rng.random() < 0.5 else TEAM_B
        team, item = first, next_free(first)
        if item is None:  # this list is used up: the other one picks
            team = 1 - first
            item = next_free(team)
            if item is None:
                break
        items.append(item)
        teams.append(team)
        taken.add(item)
        picks[team] += 1
        cursor[team] += 1
    dtype = lists[0].dtype if len(lists[0]) else lists[1].dtype
    return np.asarray(items, dtype=dtype), np.asarray(teams, dtype=np.int8)


def credit(teams: Sequence[int] | np.ndarray, clicked: Sequence[int] | np.ndarray) -> tuple[int, int]:
    """Clicks credited to team A and to team B: ``clicked`` holds the 0-based positions
    of the merged list that were clicked (each once)."""
    teams = np.asarray(teams, dtype=np.int64)
    clicked = np.unique(np.asarray(clicked, dtype=np.int64))
    clicked = clicked[(clicked >= 0) & (clicked < len(teams))]
    hits = teams[clicked]
    return int((hits == TEAM_A).sum()), int((hits == TEAM_B).sum())


def winner(teams: Sequence[int] | np.ndarray, clicked: Sequence[int] | np.ndarray) -> int | None:
    """``TEAM_A`` or ``TEAM_B`` for the team with more credited clicks, ``None`` for a tie
    (including no click)."""
    to_a, to_b = credit(teams, clicked)
    if to_a == to_b:
        return None
    return TEAM_A if to_a > to_b else TEAM_B
