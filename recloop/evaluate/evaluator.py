"""Full-ranking evaluation of a :class:`~recloop.models.Recommender`.

For each batch of test users: score every item, mask the items in the user's history
(what the model was allowed to see), take the top ``max(k)`` with one ``topk`` over the
score block, and mark the hits against the held-out items. Metrics are kept per user.

Memory is bounded by a byte budget, not a user count: the ``(users, n_items)`` float32
score block of one batch holds at most ``max_batch_bytes`` (at 1e6 items the default
256 MiB is 67 users per batch; at 1,682 items the ``batch_size`` cap of 2,048 binds).
Known items are masked by index, without a dense mask. What is kept across batches
grows with the number of users (the top ``max(k)`` lists and hits), never with
``users x items``; catalog-level metrics (coverage, exposure Gini) are bincounts over
the lists.

On a large population, ``sample_users`` evaluates a seeded uniform sample of the users
with a target; the result records the sample and the population sizes, and its
per-user values give the confidence interval of each mean over the whole population.

Under data-parallel training (``torchrun``), an evaluator given the job's
:class:`~recloop.train.distributed.DistributedContext` shards the work: the batches a
single process would rank are cut into ``world_size`` contiguous runs, each rank ranks
its run, and the top-k lists and hits are gathered to every rank, which then computes
the metrics. Every score block is the one a single process computes, so the per-user
values equal the single-process ones bit for bit (shards follow batch boundaries; a run
with fewer batches than ranks leaves some ranks idle). The sampled protocol is not
sharded (its negatives come from one sequential random stream): every rank evaluates
all users. When the job's data is split by user (``shard_data``), each rank holds only
its own users' histories and targets, so each ranks its own users (the users one process
would evaluate, sample included), and the per-user rows are gathered and put in user
order; popularity-based metrics use item counts summed over the ranks. A user's scores
then come from other batches than in one process, which changes nothing for a model
whose scores do not depend on the batch (SASRec pads by batch: equal up to float
rounding).

The sampled protocol (rank the held-out items among ``n_negatives`` random unseen
items) exists only to compare with papers that used it; it inflates every metric.

Re-ranking (``evaluate(..., rerank=...)``): the top ``candidates`` of every user go,
with the users' histories, to ``rerank`` (``FairRanker.rerank_users`` of
:mod:`recloop.rank.fairness`, the algorithm the service runs per request), and the first
``max(k)`` of each re-ordered row are the list.
:meth:`Evaluator.candidates` and :meth:`Evaluator.evaluate_candidates` split the two
steps, so that a sweep over re-ranking settings scores the model once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch
from tqdm.auto import tqdm

from recloop.data.features import Features
from recloop.data.interactions import Interactions, UserHistories
from recloop.errors import ConfigError, closest
from recloop.evaluate import metrics as M
from recloop.evaluate.stats import Interval, PairedTest, mean_confidence_interval, paired_test
from recloop.models.base import Recommender, mask_items, stable_topk
from recloop.train import distributed as D
from recloop.utils import make_rng

BEYOND_METRICS = ("coverage", "gini", "diversity", "novelty", "popularity", "long_tail", "calibration")
LIST_LEVEL = ("coverage", "gini")  # one value per run, not per user
SCORE_BYTES = np.dtype(np.float32).itemsize
#: ``rerank(item_idx, scores, histories) -> (item_idx, scores)``: ``(users, n)`` candidates best
#: first (``-1``: none) and the users' :class:`UserHistories`; returns them re-ordered.
Rerank = Callable[[np.ndarray, np.ndarray, UserHistories], tuple[np.ndarray, np.ndarray]]


@dataclass
class Candidates:
    """The best ``n`` unseen items of each evaluated user: ``items``/``scores`` are
    ``(users, n)`` (``-1`` / ``-inf`` past the catalog), ``population`` the number of
    users with a target (``users`` may be a sample)."""

    users: np.ndarray
    items: np.ndarray
    scores: np.ndarray
    population: int
    seconds: float = 0.0


@dataclass(frozen=True)
class EvaluationConfig:
    """What to measure.

    Attributes
    ----------
    k:
        Cutoffs; every metric is reported at each.
    metrics:
        Accuracy metrics among ``hr, recall, precision, ndcg, mrr, map``.
    beyond:
        Beyond-accuracy metrics among ``coverage, gini, diversity, novelty, popularity,
        long_tail, calibration``. ``diversity`` needs item features (``diversity_feature``);
        ``calibration`` (Steck's miscalibration: KL of the user's historical category mix
        against the list's, :func:`recloop.evaluate.metrics.miscalibration`) needs the
        categorical item feature ``diversity_feature`` too; without it both are skipped.
    protocol:
        ``"full"`` ranks all items; ``"sampled"`` ranks the held-out items among
        ``n_negatives`` uniformly drawn unseen items per user.
    exclude_known:
        Mask the items in the user's history before ranking.
    batch_size:
        At most this many users per batch.
    max_batch_bytes:
        Memory budget of one batch's ``(users, n_items)`` float32 score block: a batch
        holds ``max_batch_bytes // (4 * n_items)`` users (at least 1, at most
        ``batch_size``); see :meth:`users_per_batch`. Ranking a block transiently needs
        up to ~3x the block for rows with tied scores at the cut (the tie-break of
        :func:`~recloop.models.base.stable_topk`).
    sample_users:
        Evaluate a uniform sample of this many users with a target, drawn with
        ``seed`` (the same users for every model on the same target, so paired tests
        still apply); 0 evaluates all of them.
    select_by:
        The validation metric that picks hyperparameters and early-stopping epochs.
    seed:
        Seeds the user sample and the sampled protocol's negatives.
    """

    k: tuple[int, ...] = (5, 10, 20)
    metrics: tuple[str, ...] = ("hr", "recall", "precision", "ndcg", "mrr", "map")
    beyond: tuple[str, ...] = BEYOND_METRICS
    protocol: str = "full"
    n_negatives: int = 100
    exclude_known: bool = True
    batch_size: int = 2048
    max_batch_bytes: int = 256 * 2**20
    sample_users: int = 0
    diversity_feature: str = "genre"
    select_by: str = "ndcg@10"
    seed: int = 0

    def __post_init__(self):
        object.__setattr__(self, "k", tuple(sorted({int(x) for x in self.k})))
        if not self.k or self.k[0] < 1:
            raise ConfigError(f"evaluation.k must hold positive cutoffs, got {self.k}")
        for name in self.metrics:
            if name not in M.ACCURACY_METRICS:
                raise ConfigError(f"unknown metric {name!r}{closest(name, M.ACCURACY_METRICS)}; "
                                  f"metrics are {list(M.ACCURACY_METRICS)}")
        for name in self.beyond:
            if name not in BEYOND_METRICS:
                raise ConfigError(f"unknown beyond-accuracy metric {name!r}{closest(name, BEYOND_METRICS)}; "
                                  f"they are {list(BEYOND_METRICS)}")
        if self.protocol not in ("full", "sampled"):
            raise ConfigError(f"evaluation.protocol must be 'full' or 'sampled', got {self.protocol!r}")
        if self.batch_size < 1:
            raise ConfigError("evaluation.batch_size must be at least 1")
        if self.max_batch_bytes < 1:
            raise ConfigError(f"evaluation.max_batch_bytes must be positive, got {self.max_batch_bytes}")
        if self.sample_users < 0:
            raise ConfigError(f"evaluation.sample_users must be 0 (all users) or a positive sample size, "
                              f"got {self.sample_users}")
        name, _, cutoff = self.select_by.partition("@")
        if name not in M.ACCURACY_METRICS or not cutoff.isdigit():
            raise ConfigError(f"evaluation.select_by must look like 'ndcg@10', got {self.select_by!r}")

    def users_per_batch(self, n_items: int) -> int:
        """Users in one batch over ``n_items`` items: as many as fit ``max_batch_bytes``
        as float32 scores, at least 1 (a catalog larger than the budget is still ranked
        one user at a time), at most ``batch_size``."""
        return max(1, min(self.batch_size, self.max_batch_bytes // (SCORE_BYTES * max(n_items, 1))))


@dataclass
class EvaluationResult:
    """Per-user metric values of one model on one split.

    ``per_user[name]`` is aligned with ``users``; ``aggregate`` holds list-level
    metrics (coverage, Gini); ``recommendations`` the top ``max(k)`` lists.
    ``population`` is the number of users with a target; ``users`` holds all of them,
    or a seeded sample (``config.sample_users``), when :attr:`sampled`.
    """

    users: np.ndarray
    per_user: dict[str, np.ndarray]
    aggregate: dict[str, float]
    recommendations: np.ndarray
    history_lengths: np.ndarray
    config: EvaluationConfig
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)
    population: int | None = None

    def __post_init__(self):
        if self.population is None:
            self.population = len(self.users)

    @property
    def sampled(self) -> bool:
        """Whether the users are a sample of the population rather than all of it."""
        return len(self.users) < self.population

    def users_note(self) -> str:
        """Who was evaluated, for reports: "on all 943 users" or "on a sample of 10,000
        of 1,000,000 users (seed 0)"."""
        if self.sampled:
            return f"on a sample of {len(self.users):,} of {self.population:,} users (seed {self.config.seed})"
        return f"on all {len(self.users):,} users"

    def summary(self) -> dict[str, float]:
        """Mean of every per-user metric plus the list-level ones, one flat dict."""
        out = {name: float(values.mean()) if len(values) else 0.0 for name, values in self.per_user.items()}
        out.update(self.aggregate)
        return out

    def __getitem__(self, metric: str) -> float:
        return self.summary()[metric]

    def interval(self, metric: str, level: float = 0.95) -> Interval:
        """Confidence interval of the mean of a per-user metric; on a sample, of the
        population's mean (the sample is uniform, so its mean is unbiased)."""
        return mean_confidence_interval(self.per_user[metric], level)

    def compare(self, other: EvaluationResult, metric: str) -> PairedTest:
        """Paired test of this run (A) against ``other`` (B) on the same users."""
        if not np.array_equal(self.users, other.users):
            raise ValueError("paired tests need both runs evaluated on the same users")
        return paired_test(self.per_user[metric], other.per_user[metric], metric)

    def restricted_to(self, users: np.ndarray) -> EvaluationResult:
        """The per-user results of those of ``users`` that were evaluated (a group such
        as the cold users of a split), with the lists and history lengths to match.
        List-level metrics (coverage, Gini) are not recomputed: ``aggregate`` is empty."""
        keep = np.isin(self.users, users)
        return EvaluationResult(self.users[keep], {name: values[keep] for name, values in self.per_user.items()}, {},
                                self.recommendations[keep], self.history_lengths[keep], self.config,
                                population=int(keep.sum()))

    def group_summaries(self, groups: dict[str, np.ndarray]) -> dict[str, dict]:
        """For each named group of users: its evaluated users and per-user metric means."""
        out = {}
        for name, users in groups.items():
            part = self.restricted_to(users)
            out[name] = {"n_users": len(part.users), "metrics": part.summary()}
        return out

    def to_dict(self) -> dict:
        """JSON-able: metric means, 95% intervals, counts."""
        return {
            "metrics": self.summary(),
            "ci95": {name: [self.interval(name).low, self.interval(name).high] for name in self.per_user},
            "n_users": len(self.users),
            "population_users": int(self.population),
            "sampled_users": self.sampled,
            "protocol": self.config.protocol,
            "seconds": self.seconds,
            **self.extra,
        }


class Evaluator:
    """Evaluate recommenders on held-out interactions.

    Parameters
    ----------
    config:
        :class:`EvaluationConfig`; keyword arguments build one.
    item_features:
        Features whose ``diversity_feature`` (a categorical feature) defines intra-list
        diversity. Without it, models exposing item embeddings are used, else diversity
        is skipped.
    distributed:
        The data-parallel job this process belongs to: every rank calls
        :meth:`evaluate` and ranks its share of the users (see the module docstring);
        all ranks return the same result. ``None`` (the default): a single process.
    """

    def __init__(self, config: EvaluationConfig | None = None, item_features: Features | None = None,
                 distributed: D.DistributedContext | None = None, **kwargs):
        self.config = config or EvaluationConfig(**kwargs)
        self.item_features = item_features
        self.distributed = distributed or D.DistributedContext()

    def evaluate(self, model: Recommender, target: Interactions, history: Interactions,
                 train: Interactions | None = None, progress: bool = False, rerank: Rerank | None = None,
                 candidates: int = 100) -> EvaluationResult:
        """Rank for every user with a ``target`` interaction (or a seeded sample of
        them, ``config.sample_users``).

        ``history`` is what the model sees of each user and what gets masked (training
        log for validation; training plus validation for test). ``train`` defines item
        popularity for novelty and popularity metrics (default: ``history``).
        ``rerank``: re-order each user's best ``candidates`` items before the cut (see
        the module docstring).
        """
        start = time.perf_counter()
        n = max(max(self.config.k), candidates) if rerank is not None else max(self.config.k)
        found = self.candidates(model, target, history, n, progress)
        result = self.evaluate_candidates(found, target, history, train, rerank, model=model)
        result.seconds = time.perf_counter() - start
        return result

    def candidates(self, model: Recommender, target: Interactions, history: Interactions, n: int | None = None,
                   progress: bool = False) -> Candidates:
        """The best ``n`` (default ``max(k)``) items of every user with a ``target``
        (or of the seeded sample), ``history`` masked, as :meth:`evaluate` ranks them.
        With the data split by user, only this rank's users (see the module docstring)."""
        cfg = self.config
        start = time.perf_counter()
        n = max(cfg.k) if n is None else n
        target_csr = target.to_csr()
        step = cfg.users_per_batch(target.n_items)
        context = self.distributed
        if context.enabled and context.shard_data:
            users, population = self._own_users(target)
            lists, scores = self._rank_rows(model, users, step, target_csr, history, progress, n)
            return Candidates(users, lists, scores, population, time.perf_counter() - start)
        population = target.active_users()
        users = sample_users(population, cfg.sample_users, cfg.seed)
        if context.enabled and cfg.protocol == "full":
            # This rank's contiguous run of the single-process batches (possibly none).
            mine = np.array_split(np.arange(0, len(users), step), context.world_size)[context.rank]
            first, end = (int(mine[0]), min(int(mine[-1]) + step, len(users))) if len(mine) else (0, 0)
            lists, scores = self._rank_rows(model, users[first:end], step, target_csr, history, progress, n)
            gathered = D.all_gather_objects((lists, scores), context)
            lists = np.concatenate([part[0] for part in gathered])
            scores = np.concatenate([part[1] for part in gathered])
        else:
            lists, scores = self._rank_rows(model, users, step, target_csr, history, progress, n)
        return Candidates(users, lists, scores, len(population), time.perf_counter() - start)

    def _own_users(self, target: Interactions) -> tuple[np.ndarray, int]:
        """Data split by user: the users this rank holds among those one process would
        evaluate (its sample included), and the size of the whole population."""
        cfg, context = self.config, self.distributed
        mine = target.active_users()
        population = np.sort(np.concatenate(D.all_gather_objects(mine, context)))
        if cfg.sample_users:  # the single-process sample, drawn from the whole population on every rank
            mine = np.intersect1d(sample_users(population, cfg.sample_users, cfg.seed), mine)
        return mine, len(population)

    def evaluate_candidates(self, found: Candidates, target: Interactions, history: Interactions,
                            train: Interactions | None = None, rerank: Rerank | None = None,
                            model: Recommender | None = None) -> EvaluationResult:
        """The metrics of the top ``max(k)`` of ``found`` (after ``rerank``, if given),
        against ``target``; ``model`` supplies diversity vectors when there are no item
        features. With the data split by user, each rank measures its own users and every
        rank gets all ranks' rows in user order; item counts are summed over the ranks."""
        cfg, context = self.config, self.distributed
        start = time.perf_counter()
        train = history if train is None else train
        sharded = context.enabled and context.shard_data
        users, k_max = found.users, max(cfg.k)
        if rerank is None:
            lists = found.items[:, :k_max].copy()
        else:
            lists = rerank_lists(found, history.histories(users), rerank, k_max)
        if lists.shape[1] < k_max:
            lists = np.pad(lists, ((0, 0), (0, k_max - lists.shape[1])), constant_values=-1)
        target_csr = target.to_csr()
        hits = _is_relevant(lists, target_csr[users])
        n_relevant = np.diff(target_csr.indptr)[users]
        lengths = np.diff(history.user_indptr)[users]
        counts = D.sum_across(train.item_counts(), context) if sharded else train.item_counts()

        per_user: dict[str, np.ndarray] = {}
        for k in cfg.k:
            for name in cfg.metrics:
                per_user[f"{name}@{k}"] = M.ACCURACY_METRICS[name](hits, n_relevant, k)
        aggregate = self._beyond_accuracy(model, lists, train, per_user, history, users, counts)
        if sharded:  # per-user rows from every rank; list-level metrics over all of them
            gathered = D.all_gather_objects((users, lists, lengths, per_user), context)
            users = np.concatenate([part[0] for part in gathered])
            order = np.argsort(users, kind="stable")
            users = users[order]
            lists = np.concatenate([part[1] for part in gathered])[order]
            lengths = np.concatenate([part[2] for part in gathered])[order]
            per_user = {name: np.concatenate([part[3][name] for part in gathered])[order] for name in per_user}
            aggregate = self._list_metrics(lists, train.n_items)
        result = EvaluationResult(users, per_user, aggregate, lists, lengths, cfg, population=found.population)
        result.seconds = found.seconds + time.perf_counter() - start
        return result

    def _rank_rows(self, model: Recommender, users: np.ndarray, step: int, target_csr: sp.csr_matrix,
                   history: Interactions, progress: bool, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The top ``n`` items of ``users`` (``-1`` past the catalog) and their scores,
        ranked ``step`` users at a time."""
        cfg, n_items = self.config, target_csr.shape[1]
        lists = np.full((len(users), n), -1, dtype=np.int64)
        kept = np.full((len(users), n), -np.inf, dtype=np.float32)
        rng = make_rng(cfg.seed)
        batches = range(0, len(users), step)
        for start_row in tqdm(batches, desc=f"evaluate {model.name}", disable=not progress, leave=False):
            batch = users[start_row:start_row + step]
            seen = history.histories(batch)
            scores = torch.from_numpy(model.score(batch, seen))
            if cfg.protocol == "sampled":
                self._restrict_to_sampled(scores, seen, target_csr[batch], rng)
            if cfg.exclude_known:
                mask_items(scores, seen.indptr, seen.item_idx)
            values, items = stable_topk(scores, min(n, n_items))
            items = items.numpy()
            items[~torch.isfinite(values).numpy()] = -1
            rows = slice(start_row, start_row + len(batch))
            lists[rows, : items.shape[1]] = items
            kept[rows, : items.shape[1]] = values.float().numpy()
            del scores, values  # free this block before the next batch allocates its own
        return lists, kept

    def _list_metrics(self, lists: np.ndarray, n_items: int) -> dict[str, float]:
        """The metrics of the lists as a whole (coverage, exposure Gini)."""
        aggregate: dict[str, float] = {}
        for k in self.config.k:
            if "coverage" in self.config.beyond:
                aggregate[f"coverage@{k}"] = M.catalog_coverage(lists[:, :k], n_items)
            if "gini" in self.config.beyond:
                aggregate[f"gini@{k}"] = M.exposure_gini(lists[:, :k], n_items)
        return aggregate

    def _beyond_accuracy(self, model: Recommender | None, lists: np.ndarray, train: Interactions,
                         per_user: dict[str, np.ndarray], history: Interactions, users: np.ndarray,
                         counts: np.ndarray) -> dict[str, float]:
        """Adds the per-user beyond-accuracy metrics to ``per_user``; returns the list-level ones."""
        cfg, n_items = self.config, train.n_items
        vectors = self._diversity_vectors(model) if "diversity" in cfg.beyond else None
        categories = self._categories(model) if "calibration" in cfg.beyond else None
        seen = history.to_csr()[users] if categories is not None else None
        for k in cfg.k:
            top = lists[:, :k]
            if vectors is not None:
                per_user[f"diversity@{k}"] = M.intra_list_diversity(top, vectors)
            if "novelty" in cfg.beyond:
                per_user[f"novelty@{k}"] = M.novelty(top, counts, train.n_users)
            if "popularity" in cfg.beyond:
                per_user[f"popularity@{k}"] = M.average_popularity(top, counts)
            if "long_tail" in cfg.beyond:
                per_user[f"long_tail@{k}"] = M.long_tail_share(top, counts)
            if categories is not None:
                per_user[f"calibration@{k}"] = M.miscalibration(top, seen, categories)
        return self._list_metrics(lists, n_items)

    def _categories(self, model: Recommender | None) -> sp.spmatrix | None:
        """The ``diversity_feature`` multi-hot item matrix, if the items have it."""
        features = self.item_features if self.item_features is not None else getattr(model, "item_features_", None)
        if features is not None and self.config.diversity_feature in features.categorical:
            return features.categorical[self.config.diversity_feature].matrix
        return None

    def _diversity_vectors(self, model: Recommender | None) -> np.ndarray | sp.spmatrix | None:
        categories = self._categories(model)
        if categories is not None:
            return categories
        vectors = getattr(model, "item_vectors", None)
        return vectors() if callable(vectors) else None

    def _restrict_to_sampled(self, scores: torch.Tensor, seen, targets: sp.csr_matrix, rng) -> None:
        """Keep only targets and ``n_negatives`` sampled unseen items per row."""
        n_rows, n_items = scores.shape
        known = seen.to_csr() + targets  # canonical: sorted, distinct indices per row
        allowed = torch.zeros(n_rows, n_items, dtype=torch.bool)  # a quarter of the score block
        for r in range(n_rows):
            blocked = known.indices[known.indptr[r]:known.indptr[r + 1]].astype(np.int64)
            # The j-th unblocked item, without materialising the n_items-long pool: the
            # same draws as rng.choice(pool) (choice on a pool draws positions in it).
            position = rng.choice(n_items - len(blocked), size=min(self.config.n_negatives, n_items - len(blocked)),
                                  replace=False)
            negatives = position + np.searchsorted(blocked - np.arange(len(blocked)), position, side="right")
            allowed[r, torch.from_numpy(negatives)] = True
        rows = np.repeat(np.arange(n_rows), np.diff(targets.indptr))
        allowed[torch.from_numpy(rows), torch.from_numpy(targets.indices.astype(np.int64))] = True
        scores[~allowed] = -torch.inf

    def evaluate_ratings(self, model: Recommender, test: Interactions, history: Interactions | None = None) -> dict:
        """RMSE and MAE of a rating predictor on ``test``'s ratings."""
        if not model.predicts_ratings:
            raise ConfigError(f"{type(model).__name__} ranks items but does not predict ratings; "
                              "RMSE/MAE apply to rating predictors only")
        if test.rating is None:
            raise ConfigError("RMSE/MAE need a test log with ratings")
        users = test.active_users()
        predicted = np.empty(len(test), dtype=np.float32)
        step = self.config.users_per_batch(test.n_items)
        for start_row in range(0, len(users), step):
            batch = users[start_row:start_row + step]
            scores = model.score(batch, None if history is None else history.histories(batch))
            lo, hi = test.user_indptr[batch[0]], test.user_indptr[batch[-1] + 1]
            row_of_user = np.full(test.n_users, -1)
            row_of_user[batch] = np.arange(len(batch))
            predicted[lo:hi] = scores[row_of_user[test.user_idx[lo:hi]], test.item_idx[lo:hi]]
        return {"rmse": M.rmse(predicted, test.rating), "mae": M.mae(predicted, test.rating)}


def validation_metric(model: Recommender, train: Interactions, valid: Interactions,
                      metric: str | None = None) -> Callable[[], float]:
    """The early-stopping callback of ``model``: a function returning ``metric`` (default:
    the model's ``train.metric``, else ``ndcg@10``) of the model as it is at call time,
    ranking all items for the ``valid`` targets with ``train`` as (masked) history, as
    the experiment's validation does. Pass it to ``model.fit(..., validate=...)``."""
    if metric is None:
        metric = getattr(getattr(model.config, "train", None), "metric", "ndcg@10")
    name, _, cutoff = metric.partition("@")
    context = D.current()  # data split by user: every rank validates its own users (the trainer calls all)
    evaluator = Evaluator(EvaluationConfig(k=(int(cutoff),), metrics=(name,), beyond=(), select_by=metric),
                          distributed=context if context.shard_data else None)
    return lambda: evaluator.evaluate(model, valid, train)[metric]


def rerank_lists(found: Candidates, seen: UserHistories, rerank: Rerank, k: int, chunk: int = 4096) -> np.ndarray:
    """``(users, k)`` lists: the candidates through ``rerank`` with the users' histories
    (``seen``, aligned with ``found.users``), ``chunk`` users at a time, cut to ``k``."""
    lists = np.full((len(found.users), k), -1, dtype=np.int64)
    for lo in range(0, len(found.users), chunk):
        rows = np.arange(lo, min(lo + chunk, len(found.users)))
        start, end = seen.indptr[rows[0]], seen.indptr[rows[-1] + 1]
        part = UserHistories(seen.indptr[rows[0]:rows[-1] + 2] - start, seen.item_idx[start:end], seen.n_items)
        items, _ = rerank(found.items[rows], found.scores[rows], part)
        lists[rows, :min(k, items.shape[1])] = items[:, :k]
    return lists


def sample_users(users: np.ndarray, size: int, seed: int) -> np.ndarray:
    """A uniform sample of ``size`` of ``users`` without replacement, in ascending
    order, drawn from ``seed`` alone (so every model evaluated on the same target gets
    the same users); all of them when ``size`` is 0 or not smaller than the population."""
    if size == 0 or size >= len(users):
        return users
    return np.sort(make_rng(seed).choice(users, size=size, replace=False))


def _is_relevant(items: np.ndarray, targets: sp.csr_matrix) -> np.ndarray:
    """``items`` (rows x k, -1 = empty) against each row's target set."""
    n_items = targets.shape[1]
    target_keys = np.repeat(np.arange(targets.shape[0]), np.diff(targets.indptr)) * n_items + targets.indices
    keys = np.arange(items.shape[0])[:, None] * n_items + items
    return np.isin(keys, target_keys) & (items >= 0)
