"""Data quality checks of an interaction log, and the filters that drop what they flag.

:func:`check_dataset` looks for

* **duplicates**: rows repeating another row exactly (user, item, rating, time);
* **conflicting ratings**: (user, item) pairs rated with different values;
* **timestamp anomalies**: zero or negative times, times after ``now``, and **bursts**:
  windows of ``burst_window`` seconds holding an implausible number of events across
  all users;
* **bot-like users**: users whose peak events per ``burst_window`` or peak events per
  hour is implausible, or whose event count exceeds ``count_factor`` times the 99th
  percentile of all users' counts;
* **items with no text or features**, the share of **cold** users and items (fewer than
  ``cold_threshold`` interactions) and the **sparsity**.

"Implausible" is a robust outlier rule, so the thresholds follow the data instead of
being fixed: on the log of the value, ``z = (x - median) / (1.4826 * MAD)`` (MAD, the
median absolute deviation, scaled to the standard deviation of a normal sample), and a
value is flagged when ``z > robust_z`` (default 4.5: on ml-100k the most extreme
genuine user scores 3.3 on peak events per minute and 2.5 on peak events per hour).

Counts get a quantile rule instead: their distribution is truncated at the k-core
bound in many public logs (amazon-beauty: every user has 5 or more, the median is 6), where
the MAD of the log counts is too small to mean anything (4.5 robust z would flag 5% of
beauty's users, down to 21 interactions).

Logs whose times are positions rather than unix seconds (the amazon-beauty sequence
file: every time below 10^6) get no timestamp checks. :func:`apply_filters` drops what a
:class:`DataFilters` (``[data.filters]`` in an experiment config) names.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from recloop.data.dataset import Dataset
from recloop.errors import ConfigError, DataError

UNIX_TIME_FLOOR = 1_000_000  # times all below this are positions in a sequence, not unix seconds
MAD_SCALE = 1.4826  # MAD -> standard deviation of a normal sample
HOUR = 3600


@dataclass(frozen=True)
class CheckConfig:
    """Thresholds of :func:`check_dataset`.

    ``robust_z``: the robust z-score (see the module docstring) above which a user's
    rate or a window's event count is implausible. ``count_factor``: a user with more
    than this many times the 99th percentile of the users' event counts is a bot. ``burst_window``: seconds
    of the window for bursts and for a user's peak rate. ``min_burst_events``: a window
    is a burst only with at least this many events as well. ``cold_threshold``: users and
    items with fewer interactions are cold. ``now``: unix seconds after which a time is
    in the future (``None``: the time of the check).
    """

    robust_z: float = 4.5
    count_factor: float = 10.0
    burst_window: int = 60
    min_burst_events: int = 20
    cold_threshold: int = 5
    now: int | None = None

    def __post_init__(self):
        if self.robust_z <= 0:
            raise ConfigError(f"data check robust_z must be positive, got {self.robust_z}")
        if self.burst_window < 1:
            raise ConfigError(f"data check burst_window must be at least 1 second, got {self.burst_window}")
        if self.cold_threshold < 1:
            raise ConfigError(f"data check cold_threshold must be at least 1, got {self.cold_threshold}")


@dataclass(frozen=True)
class DataFilters:
    """What to drop before preprocessing (``[data.filters]``), as :func:`check_dataset`
    flags it with ``thresholds``.

    ``drop_duplicates``: exact duplicate rows (the first is kept). ``drop_conflicts``:
    all but the latest row of each (user, item) pair with conflicting ratings.
    ``drop_bad_timestamps``: rows with a zero, negative or future time.
    ``drop_bursts``: rows in burst windows. ``drop_bots``: every row of a bot-like user.
    """

    drop_duplicates: bool = False
    drop_conflicts: bool = False
    drop_bad_timestamps: bool = False
    drop_bursts: bool = False
    drop_bots: bool = False
    thresholds: CheckConfig = field(default_factory=CheckConfig)

    @property
    def any(self) -> bool:
        return (self.drop_duplicates or self.drop_conflicts or self.drop_bad_timestamps or self.drop_bursts
                or self.drop_bots)


@dataclass
class Finding:
    """One check: ``count`` things flagged out of ``total`` (rows, users, items...)."""

    name: str
    count: int
    total: int
    unit: str
    detail: str = ""
    examples: list = field(default_factory=list)
    flag: bool = True  # False: a description (sparsity, cold shares), not a problem

    @property
    def share(self) -> float:
        return self.count / self.total if self.total else 0.0

    @property
    def status(self) -> str:
        """``FLAG`` (found something), ``ok`` (found nothing) or ``info`` (a description)."""
        return ("FLAG" if self.count else "ok") if self.flag else "info"

    def to_dict(self) -> dict:
        return {"count": self.count, "total": self.total, "unit": self.unit, "share": self.share,
                "flagged": bool(self.flag and self.count > 0), "status": self.status, "detail": self.detail,
                "examples": self.examples}


@dataclass
class DataReport:
    """What :func:`check_dataset` found; ``rows`` holds the boolean row mask (over the
    log's canonical order) of each row-level check, ``bot_users`` the user indices."""

    dataset: str
    findings: dict[str, Finding]
    rows: dict[str, np.ndarray]
    bot_users: np.ndarray
    config: CheckConfig

    def to_dict(self) -> dict:
        return {"dataset": self.dataset, "checks": {name: f.to_dict() for name, f in self.findings.items()},
                "thresholds": {"robust_z": self.config.robust_z, "count_factor": self.config.count_factor,
                               "burst_window": self.config.burst_window,
                               "min_burst_events": self.config.min_burst_events,
                               "cold_threshold": self.config.cold_threshold, "now": self.config.now}}

    def flagged(self) -> list[str]:
        """Names of the checks that found a problem."""
        return [name for name, f in self.findings.items() if f.flag and f.count > 0]

    def table(self) -> str:
        """A fixed-width text table, one line per check."""
        header = ["check", "count", "of", "share", "status", "detail"]
        rows = [[name, f"{f.count:,}", f"{f.total:,} {f.unit}", f"{f.share:.2%}",
                 f.status, f.detail]
                for name, f in self.findings.items()]
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
        lines = ["  ".join([c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))]
                           + [r[-1]]) for r in [header, *rows]]
        lines.insert(1, "  ".join("-" * w for w in widths) + "  ------")
        return "\n".join([f"data check: {self.dataset}", *lines])


def robust_z(values: np.ndarray) -> np.ndarray:
    """``(x - median) / (1.4826 * MAD)`` of ``log(values)``; a zero MAD falls back to
    the mean absolute deviation (times sqrt(pi/2)); all zeros if the values are equal."""
    x = np.log(np.maximum(np.asarray(values, dtype=np.float64), 1e-12))
    if not len(x):
        return x
    center = np.median(x)
    spread = MAD_SCALE * np.median(np.abs(x - center))
    if spread == 0:
        spread = np.sqrt(np.pi / 2) * np.mean(np.abs(x - center))
    return (x - center) / spread if spread > 0 else np.zeros_like(x)


def _peak_in_window(timestamp: np.ndarray, indptr: np.ndarray, window: int) -> np.ndarray:
    """Per user (rows sorted by user then time): the most events in any ``window``
    seconds, i.e. ``max_j #{i : t_j <= t_i < t_j + window}``."""
    n_users = len(indptr) - 1
    user = np.repeat(np.arange(n_users), np.diff(indptr))
    # Search the window end inside each user's run: offset the times by user so runs never mix.
    span = int(timestamp.max() - timestamp.min()) + window + 1 if len(timestamp) else 1
    key = (user.astype(np.float64) * span) + (timestamp - (timestamp.min() if len(timestamp) else 0))
    end = np.searchsorted(key, key + window, side="left")
    counts = end - np.arange(len(key))
    peak = np.zeros(n_users, dtype=np.int64)
    np.maximum.at(peak, user, counts)
    return peak


def check_dataset(dataset: Dataset, config: CheckConfig = CheckConfig()) -> DataReport:
    """Run every check on ``dataset`` (see the module docstring)."""
    log = dataset.interactions
    n, n_users, n_items = len(log), log.n_users, log.n_items
    if n == 0:
        raise DataError(f"{dataset.name}: no interactions to check")
    findings: dict[str, Finding] = {}
    rows: dict[str, np.ndarray] = {}
    users, items = log.users, log.items

    def user_examples(user_idx: np.ndarray) -> list[str]:
        return [users.id(int(u)) for u in user_idx[:5]]

    # --- duplicates and conflicts ------------------------------------------------------------
    pair = log.user_idx.astype(np.int64) * n_items + log.item_idx
    columns = [pair]
    if log.rating is not None:
        columns.append(log.rating.view(np.int32).astype(np.int64))
    if log.timestamp is not None:
        columns.append(log.timestamp)
    order = np.lexsort(columns[::-1])
    stacked = np.stack([c[order] for c in columns], axis=1)
    same_as_previous = np.zeros(n, dtype=bool)
    same_as_previous[1:] = (stacked[1:] == stacked[:-1]).all(axis=1)
    duplicate = np.zeros(n, dtype=bool)
    duplicate[order] = same_as_previous
    rows["duplicates"] = duplicate
    findings["duplicates"] = Finding("duplicates", int(duplicate.sum()), n, "rows",
                                     "rows repeating another row exactly (user, item, rating, time)",
                                     user_examples(log.user_idx[duplicate]))
    repeated_pairs = n - len(np.unique(pair))
    findings["repeated pairs"] = Finding("repeated pairs", int(repeated_pairs), n, "rows",
                                         "rows whose (user, item) pair occurred before (normal for repeat "
                                         "consumption; exact duplicates included)", flag=False)
    if log.rating is not None:
        pair_order = np.lexsort((log.rating, pair))
        sorted_pair, sorted_rating = pair[pair_order], log.rating[pair_order]
        starts = np.flatnonzero(np.r_[True, sorted_pair[1:] != sorted_pair[:-1]])
        distinct = np.add.reduceat(np.r_[True, (sorted_pair[1:] != sorted_pair[:-1])
                                         | (sorted_rating[1:] != sorted_rating[:-1])].astype(np.int64), starts)
        conflicting_pairs = sorted_pair[starts][distinct > 1]
        in_conflict = np.isin(pair, conflicting_pairs)
        # All but the latest row of each conflicting pair (rows are in time order per user).
        latest = np.zeros(n, dtype=bool)
        _, last_position = np.unique(pair[::-1], return_index=True)
        latest[n - 1 - last_position] = True
        rows["conflicting ratings"] = in_conflict & ~latest
        findings["conflicting ratings"] = Finding(
            "conflicting ratings", len(conflicting_pairs), len(starts), "pairs",
            "(user, item) pairs rated with different values", user_examples(conflicting_pairs // n_items))

    # --- timestamps --------------------------------------------------------------------------
    timestamp = log.timestamp
    unix = timestamp is not None and timestamp.max() >= UNIX_TIME_FLOOR
    now = int(time.time()) if config.now is None else config.now
    if unix:
        zero = timestamp <= 0
        future = timestamp > now
        rows["zero timestamps"], rows["future timestamps"] = zero, future
        findings["zero timestamps"] = Finding("zero timestamps", int(zero.sum()), n, "rows",
                                              "time zero or negative (a missing time written as 0)",
                                              user_examples(log.user_idx[zero]))
        findings["future timestamps"] = Finding("future timestamps", int(future.sum()), n, "rows",
                                                f"time after {time.strftime('%Y-%m-%d', time.gmtime(now))}",
                                                user_examples(log.user_idx[future]))
        valid = ~(zero | future)
        window = timestamp // config.burst_window
        bins, inverse, counts = np.unique(window[valid], return_inverse=True, return_counts=True)
        z = robust_z(counts)
        burst_bins = (z > config.robust_z) & (counts >= config.min_burst_events)
        burst = np.zeros(n, dtype=bool)
        burst[np.flatnonzero(valid)] = burst_bins[inverse]
        rows["bursts"] = burst
        examples = [time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(int(b) * config.burst_window))
                    for b in bins[burst_bins][:5]]
        findings["bursts"] = Finding(
            "bursts", int(burst.sum()), n, "rows",
            f"rows in {int(burst_bins.sum())} window(s) of {config.burst_window}s with implausibly many events "
            f"(robust z > {config.robust_z:g}; the busiest holds {int(counts.max()) if len(counts) else 0}, "
            f"z {float(z.max()) if len(z) else 0.0:.1f})",
            examples)
    else:
        findings["timestamps"] = Finding("timestamps", 0, n, "rows",
                                         "no unix times (none, or positions in a sequence): not checked", flag=False)

    # --- bot-like users ----------------------------------------------------------------------
    counts = log.user_counts()
    active = np.flatnonzero(counts > 0)
    reasons: dict[int, list[str]] = {}
    limit = config.count_factor * np.percentile(counts[active], 99)
    for user in active[counts[active] > limit]:
        reasons.setdefault(int(user), []).append(f"events {int(counts[user])} (> {limit:.0f})")
    features = {}
    if unix:
        valid_rows = (timestamp > 0) & (timestamp <= now)
        kept = log.select(valid_rows) if not valid_rows.all() else log
        if len(kept):
            features[f"peak events per {config.burst_window}s"] = _peak_in_window(
                kept.timestamp, kept.user_indptr, config.burst_window)[active].astype(np.float64)
            features["peak events per hour"] = _peak_in_window(kept.timestamp, kept.user_indptr, HOUR)[active].astype(
                np.float64)
    highest = []  # the largest z of each feature, flagged or not: how close the data comes to the line
    for name, values in features.items():
        z = robust_z(np.maximum(values, 1))
        top = int(np.argmax(z)) if len(z) else 0
        if len(z):
            highest.append(f"{name} {int(values[top])} (z {z[top]:.1f})")
        for position in np.flatnonzero(z > config.robust_z):
            reasons.setdefault(int(active[position]), []).append(f"{name} {int(values[position])} (z {z[position]:.1f})")
    bot_users = np.array(sorted(reasons), dtype=np.int64)
    rows["bot users"] = np.isin(log.user_idx, bot_users)
    findings["bot users"] = Finding(
        "bot users", len(bot_users), len(active), "users",
        f"more than {limit:.0f} events ({config.count_factor:g} x the 99th percentile)"
        + (f" or implausible {', '.join(features)} (robust z > {config.robust_z:g}; highest: {', '.join(highest)})"
           if features else ""),
        [f"{users.id(int(u))}: {'; '.join(reasons[int(u)])}" for u in bot_users[:5]])

    # --- items, cold start, sparsity ---------------------------------------------------------
    item_counts = np.bincount(log.item_idx, minlength=n_items)
    features_of_items = dataset.item_features
    if features_of_items is None:
        findings["items without features"] = Finding("items without features", n_items, n_items, "items",
                                                     "the dataset has no item text or features")
    else:
        has = np.zeros(n_items, dtype=bool)
        for feature in features_of_items.categorical.values():
            has |= np.diff(feature.matrix.indptr) > 0
        for values in features_of_items.text.values():
            has |= np.array([bool(str(v).strip()) if v is not None else False for v in values])
        missing = np.flatnonzero(~has)
        findings["items without features"] = Finding(
            "items without features", len(missing), n_items, "items",
            f"no categorical value and no text among {list(features_of_items.categorical)} "
            f"{list(features_of_items.text)}", [items.id(int(i)) for i in missing[:5]])
    findings["cold users"] = Finding("cold users", int(((counts > 0) & (counts < config.cold_threshold)).sum()),
                                     len(active), "users", f"fewer than {config.cold_threshold} interactions",
                                     flag=False)
    findings["cold items"] = Finding("cold items", int((item_counts < config.cold_threshold).sum()), n_items,
                                     "items", f"fewer than {config.cold_threshold} interactions", flag=False)
    distinct_pairs = len(np.unique(pair))
    findings["sparsity"] = Finding("sparsity", n_users * n_items - distinct_pairs, n_users * n_items, "cells",
                                   f"empty cells of the {n_users:,} x {n_items:,} matrix "
                                   f"(density {distinct_pairs / max(1, n_users * n_items):.4%})", flag=False)
    return DataReport(dataset.name, findings, rows, bot_users, config)


def apply_filters(dataset: Dataset, filters: DataFilters) -> tuple[Dataset, dict[str, int]]:
    """``dataset`` without the rows ``filters`` drop, and how many rows each drop
    removed (a row flagged twice counts for the first drop naming it)."""
    if not filters.any:
        return dataset, {}
    report = check_dataset(dataset, filters.thresholds)
    drop = np.zeros(len(dataset.interactions), dtype=bool)
    dropped: dict[str, int] = {}
    for wanted, name in ((filters.drop_duplicates, "duplicates"), (filters.drop_conflicts, "conflicting ratings"),
                         (filters.drop_bad_timestamps, "zero timestamps"),
                         (filters.drop_bad_timestamps, "future timestamps"), (filters.drop_bursts, "bursts"),
                         (filters.drop_bots, "bot users")):
        if wanted and name in report.rows:
            new = report.rows[name] & ~drop
            dropped[name] = int(new.sum())
            drop |= new
    if drop.all():
        raise DataError(f"{dataset.name}: the data filters drop every interaction")
    return dataset.with_interactions(dataset.interactions.select(~drop)), dropped

