"""The online report: per arm, users, impressions, click-through rate and clicks at each
position, with confidence intervals and the experiment's significance test, from the
impression log (:mod:`recloop.serve.impressions`).

A click is an attributed event of one of ``click_types`` on an item of the impression
it names; each (impression, item) counts once, however often it is clicked. An event
naming an item the impression did not show, or a request id never logged, is counted
under ``unmatched`` and nowhere else.

* Answers of one arm (``single`` and ``ab`` modes): the arm's CTR is the share of its
  impressions with at least one click, with a per-user (delta-method) interval; with
  two arms, :func:`recloop.evaluate.online.ab_test` compares them.
* Interleaved answers: each arm's team is credited the clicks on the items it placed;
  the arm's CTR is the share of impressions where its team got a click. An impression
  is won by the team with more credited clicks; each user prefers the arm that won more
  of their impressions, and the sign test over users decides
  (:func:`recloop.evaluate.online.sign_test`).

Users are the unit of every interval and test (see :mod:`recloop.evaluate.online`); an
anonymous impression is a user of its own.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from recloop.evaluate.online import ab_test, ratio_interval, sign_test, user_preferences
from recloop.serve.impressions import INTERLEAVED, Attribution, Impression

DEFAULT_CLICK_TYPES = ("click", "purchase")


def _user_key(impression: Impression) -> str:
    return impression.user_id if impression.user_id is not None else f"request:{impression.request_id}"


def _clicked_positions(impressions: Sequence[Impression], attributions: Sequence[Attribution]
                       ) -> tuple[dict[str, set[int]], int]:
    """0-based positions clicked in each impression (by request id), and the number of
    attributed events that match no shown item."""
    where = {i.request_id: {item: p for p, item in enumerate(i.items)} for i in impressions}
    clicked: dict[str, set[int]] = defaultdict(set)
    unmatched = 0
    for a in attributions:
        position = where.get(a.request_id, {}).get(a.item_id)
        if position is None:
            unmatched += 1
        else:
            clicked[a.request_id].add(position)
    return clicked, unmatched


def _arm_row(name: str, users: dict[str, list[int]], clicks_at: np.ndarray, clicks: int, level: float) -> dict:
    """``users``: per user, [impressions, impressions with a click (of this arm)]."""
    counts = np.asarray(list(users.values()), dtype=np.float64).reshape(-1, 2)
    ctr, _ = ratio_interval(counts[:, 1], counts[:, 0], level)
    impressions = int(counts[:, 0].sum())
    return {"arm": name, "users": len(users), "impressions": impressions, "clicks": int(clicks),
            "clicked_impressions": int(counts[:, 1].sum()), "ctr": ctr.mean, "ctr_low": ctr.low, "ctr_high": ctr.high,
            "clicks_per_impression": clicks / impressions if impressions else float("nan"),
            "clicks_at": [int(c) for c in clicks_at]}


def _positions(impressions: Sequence[Impression]) -> int:
    return max((len(i.items) for i in impressions), default=0)


def _split_counts(impressions: Sequence[Impression], clicked: dict[str, set[int]]):
    """Per arm: per user [impressions, impressions with a click]; and clicks per position."""
    k = _positions(impressions)
    users: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    clicks_at: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(k, np.int64))
    for i in impressions:
        positions = clicked.get(i.request_id, set())
        row = users[i.arm][_user_key(i)]
        row[0] += 1
        row[1] += bool(positions)
        for p in positions:
            clicks_at[i.arm][p] += 1
    return users, clicks_at


def _split_report(impressions: Sequence[Impression], clicked: dict[str, set[int]], control: str | None,
                  level: float) -> dict:
    """Answers each given by one arm: a row per arm, and the A/B test of two arms."""
    users, clicks_at = _split_counts(impressions, clicked)
    names = _order(list(users), control)
    arms = [_arm_row(n, users[n], clicks_at[n], int(clicks_at[n].sum()), level) for n in names]
    report = {"kind": "ab" if len(names) == 2 else "single", "arms": arms, "test": None}
    if len(names) == 2:
        a, b = (np.asarray(list(users[n].values()), dtype=np.float64) for n in names)
        test = ab_test(a[:, 1], a[:, 0], b[:, 1], b[:, 0], level)
        report["test"] = {
            "name": "two-proportion z test of CTR, per-user (delta-method) standard errors",
            "control": names[0], "treatment": names[1],
            "difference": test.difference.mean, "low": test.difference.low, "high": test.difference.high,
            "bootstrap_low": test.bootstrap.low, "bootstrap_high": test.bootstrap.high,
            "z": test.z, "p": test.pvalue, "significant": test.significant(1 - level),
            "winner": _winner(names, test.difference.mean, test.pvalue, level)}
    elif len(names) > 2:
        report["kind"] = "arms"  # no pairwise test among more than two arms
    return report


def _interleaved_counts(impressions: Sequence[Impression], clicked: dict[str, set[int]], names: list[str]):
    """Per team: per user [impressions, impressions where the team got a click] and clicks
    per position; per user, impressions won by ``names[0]`` and ``names[1]``; and
    impressions won by each and tied."""
    k = _positions(impressions)
    users = {n: defaultdict(lambda: [0, 0]) for n in names}
    clicks_at = {n: np.zeros(k, np.int64) for n in names}
    wins: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # per user: impressions won by names[0], names[1]
    won = [0, 0, 0]  # impressions won by names[0], by names[1], tied
    for i in impressions:
        positions = clicked.get(i.request_id, set())
        credit = [0, 0]
        for p in positions:
            team = names.index(i.teams[p])
            credit[team] += 1
            clicks_at[names[team]][p] += 1
        key = _user_key(i)
        for team, name in enumerate(names):
            row = users[name][key]
            row[0] += 1
            row[1] += credit[team] > 0
        if credit[0] != credit[1]:
            winner = 0 if credit[0] > credit[1] else 1
            wins[key][winner] += 1
            won[winner] += 1
        else:
            wins.setdefault(key, [0, 0])  # a user with ties only has no preference
            won[2] += 1
    return users, clicks_at, wins, won


def _interleaved_report(impressions: Sequence[Impression], clicked: dict[str, set[int]], control: str | None,
                        level: float) -> dict:
    """Interleaved answers: per-team credit, impression wins, per-user preferences."""
    names = _order(sorted({t for i in impressions for t in (i.teams or ())}), control)
    if len(names) != 2:
        return {"kind": "interleaving", "arms": [], "test": None}
    users, clicks_at, wins, won = _interleaved_counts(impressions, clicked, names)
    arms = [_arm_row(n, users[n], clicks_at[n], int(clicks_at[n].sum()), level) for n in names]
    per_user = np.asarray(list(wins.values()), dtype=np.int64).reshape(-1, 2)
    prefer_a, prefer_b, ties = user_preferences(per_user[:, 0], per_user[:, 1])
    test = sign_test(prefer_a, prefer_b, ties, level)
    decided = won[0] + won[1] + won[2]
    delta = (won[1] + 0.5 * won[2]) / decided - 0.5 if decided else float("nan")  # Chapelle et al. 2012
    return {"kind": "interleaving", "arms": arms, "test": {
        "name": "sign test over users (each prefers the arm that won more of their impressions)",
        "control": names[0], "treatment": names[1],
        "impressions_won": {names[0]: won[0], names[1]: won[1], "ties": won[2]}, "delta": delta,
        "users_prefer": {names[0]: prefer_a, names[1]: prefer_b, "none": ties},
        "share_prefer_treatment": test.share_b.mean, "low": test.share_b.low, "high": test.share_b.high,
        "p": test.pvalue, "significant": test.significant(1 - level),
        "winner": _winner(names, prefer_b - prefer_a, test.pvalue, level)}}


def _order(names: list[str], control: str | None) -> list[str]:
    """Arms in report order: ``control`` first when given, then by name."""
    names = sorted(names)
    if control in names:
        names.remove(control)
        names.insert(0, control)
    return names


def _winner(names: list[str], difference: float, pvalue: float, level: float) -> str | None:
    if not math.isfinite(difference) or pvalue >= 1 - level or difference == 0:
        return None
    return names[1] if difference > 0 else names[0]


def build_report(impressions: Sequence[Impression], attributions: Sequence[Attribution],
                 click_types: Sequence[str] = DEFAULT_CLICK_TYPES, control: str | None = None,
                 level: float = 0.95) -> dict:
    """The report (a JSON-able dict) of these impressions and attributed events: a
    ``split`` part for answers of one arm and an ``interleaving`` part for merged ones
    (either may be empty)."""
    attributions = [a for a in attributions if a.type in set(click_types)]
    clicked, unmatched = _clicked_positions(impressions, attributions)
    split = [i for i in impressions if i.arm != INTERLEAVED]
    merged = [i for i in impressions if i.arm == INTERLEAVED and i.teams]
    return _finite({"impressions": len(impressions), "click_types": list(click_types), "level": level,
                    "unmatched_events": unmatched,
                    "split": _split_report(split, clicked, control, level) if split else None,
                    "interleaving": _interleaved_report(merged, clicked, control, level) if merged else None})


def _finite(node):
    """``None`` for every NaN or infinity (not JSON), plain floats for numpy ones."""
    if isinstance(node, dict):
        return {k: _finite(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_finite(v) for v in node]
    if isinstance(node, float | np.floating):
        return float(node) if math.isfinite(node) else None
    return node


def user_counts(impressions: Sequence[Impression], attributions: Sequence[Attribution],
                click_types: Sequence[str] = DEFAULT_CLICK_TYPES, control: str | None = None) -> dict:
    """What the tests of :func:`build_report` take, one row per user: ``split`` maps each
    arm to ``(users, 2)`` [impressions, clicked impressions]; ``interleaving`` gives the
    arms and ``(users, 2)`` impressions won by each. For power analyses (resampling users)."""
    clicked, _ = _clicked_positions(impressions, [a for a in attributions if a.type in set(click_types)])
    split = [i for i in impressions if i.arm != INTERLEAVED]
    merged = [i for i in impressions if i.arm == INTERLEAVED and i.teams]
    users, _ = _split_counts(split, clicked)
    out: dict = {"split": {n: np.asarray(list(users[n].values()), dtype=np.int64).reshape(-1, 2)
                           for n in _order(list(users), control)}, "interleaving": None}
    names = _order(sorted({t for i in merged for t in (i.teams or ())}), control)
    if len(names) == 2:
        wins = _interleaved_counts(merged, clicked, names)[2]
        out["interleaving"] = {"arms": names, "wins": np.asarray(list(wins.values()), dtype=np.int64).reshape(-1, 2)}
    return out


def read_report(log, click_types: Sequence[str] = DEFAULT_CLICK_TYPES, control: str | None = None,
                level: float = 0.95) -> dict:
    """:func:`build_report` of everything in an :class:`~recloop.serve.impressions.ImpressionLog`."""
    return build_report(log.impressions(), log.attributions(list(click_types)), click_types, control, level)


def _number(value: float, digits: int = 4) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def format_report(report: dict, positions: int = 10) -> str:
    """The report as terminal tables."""
    lines = [(f"{report['impressions']} impressions; clicks are {', '.join(report['click_types'])} events "
              f"({report['unmatched_events']} attributed events matched no shown item); "
              f"{report['level']:.0%} intervals")]
    for part, title in (("split", "answers by one arm"), ("interleaving", "interleaved answers")):
        section = report.get(part)
        if not section or not section["arms"]:
            continue
        lines += ["", f"{title}:"]
        width = max(6, *(len(a["arm"]) for a in section["arms"]))
        shown = min(positions, max(len(a["clicks_at"]) for a in section["arms"]))
        head = (f"{'arm':<{width}}  {'users':>6}  {'impr.':>7}  {'clicks':>6}  {'CTR':>6}  {'CTR interval':>15}  "
                + "  ".join(f"@{p + 1:<3}" for p in range(shown)))
        lines += [head, "-" * len(head)]
        for a in section["arms"]:
            lines.append(f"{a['arm']:<{width}}  {a['users']:>6}  {a['impressions']:>7}  {a['clicks']:>6}  "
                         f"{_number(a['ctr'], 3):>6}  {_number(a['ctr_low'], 3):>7}-{_number(a['ctr_high'], 3):<7}  "
                         + "  ".join(f"{c:<4}" for c in a["clicks_at"][:shown]))
        test = section.get("test")
        if test is None:
            continue
        if part == "split":
            lines.append(f"{test['treatment']} - {test['control']}: CTR {_number(test['difference'])} "
                         f"(interval {_number(test['low'])} .. {_number(test['high'])}; per-user bootstrap "
                         f"{_number(test['bootstrap_low'])} .. {_number(test['bootstrap_high'])}), "
                         f"z = {_number(test['z'], 2)}, p = {test['p']:.3g}")
        else:
            users = test["users_prefer"]
            won = test["impressions_won"]
            lines.append(f"impressions won: {test['control']} {won[test['control']]}, {test['treatment']} "
                         f"{won[test['treatment']]}, ties {won['ties']} (delta {_number(test['delta'])}); users "
                         f"preferring: {test['control']} {users[test['control']]}, {test['treatment']} "
                         f"{users[test['treatment']]}, neither {users['none']}; sign test p = {test['p']:.3g}")
        lines.append(f"winner: {test['winner']}" if test["winner"] else
                     f"no significant difference at p < {1 - report['level']:.2g}")
    if report.get("split") is None and report.get("interleaving") is None:
        lines.append("no impressions yet")
    return "\n".join(lines)
