"""What the sequence models (SASRec, GRU4Rec) share: token layout, whole-sequence
training data, the next-item losses, scoring from the given history, and the hook for
text-initialised item embeddings.

Token layout. Item ``i`` is token ``i + 1``; token 0 is padding; token ``n_items + 1``
is ``BOS``, a start-of-history token. A user's tokens are ``[BOS, s1, ..., sn]`` and the
model reads the last ``max_len`` of them, left-padded, so the most recent item is always
in the last slot.

Training. Each user is one example: inputs ``tokens[:-1]``, targets ``tokens[1:]``
(the last ``max_len`` of each), with a next-item loss at every position, so one
forward pass trains on every prefix of the sequence (the BOS position learns to
predict a first item from nothing). Users with more than ``max_len`` training items
contribute their latest window only, as in the SASRec paper.

Empty histories. A user with no history is the sequence ``[BOS]``: the model answers
from its learned start state, which was trained to predict users' first items, so the
scores are a learned, popularity-like prior.

Losses. ``ce``: softmax cross-entropy over the whole catalog, logits one matmul against
the item table (weights tied with the input embeddings). ``sampled``: softmax over the
target and ``n_negatives`` items shared by the batch, drawn uniformly or by popularity,
with the log-Q correction (every logit minus the log of its sampling probability) so the
sampled softmax estimates the full one; accidental hits are masked. For catalogs too
big for a ``(positions, n_items)`` logit matrix.

Text initialisation (``text_init = true``): the item table is ``E_id + W t_i`` where
``t_i`` is a fixed text embedding of item ``i`` and ``W`` a learned projection; the
same projection maps text of items never seen in training into the item space
(``text_to_item_vectors``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recloop.data.interactions import Interactions, UserHistories
from recloop.errors import ConfigError
from recloop.models.neural import NeuralRecommender
from recloop.train import distributed

PAD = 0
IGNORE = -100  # target of a padded position (F.cross_entropy's ignore_index)
LOSSES = ("ce", "sampled")
NEGATIVE_SAMPLERS = ("uniform", "popularity")


def last_tokens(items: np.ndarray, starts: np.ndarray, ends: np.ndarray, max_len: int, bos: int | None) -> np.ndarray:
    """``(len(starts), max_len)`` token ids: for row ``r``, ``[bos] + items[starts[r]:ends[r]] + 1``,
    its last ``max_len`` tokens, left-padded with ``PAD`` (no BOS when ``bos`` is None)."""
    n_rows = len(starts)
    lengths = np.asarray(ends - starts, dtype=np.int64)
    out = np.zeros((n_rows, max_len), dtype=np.int64)
    taken = np.minimum(lengths, max_len)
    total = int(taken.sum())
    if total:
        row_start = np.repeat(np.cumsum(taken) - taken, taken)
        j = np.arange(total) - row_start  # position inside the taken items
        rows = np.repeat(np.arange(n_rows), taken)
        src = np.repeat(ends - taken, taken) + j
        cols = np.repeat(max_len - taken, taken) + j
        out[rows, cols] = np.asarray(items, dtype=np.int64)[src] + 1
    if bos is not None:
        has_room = lengths < max_len
        out[np.flatnonzero(has_room), max_len - 1 - lengths[has_room]] = bos
    return out


def history_tokens(history: UserHistories, max_len: int, bos: int) -> np.ndarray:
    """The model input for scoring: the last ``max_len`` tokens of ``[BOS] + history``."""
    return last_tokens(history.item_idx, history.indptr[:-1], history.indptr[1:], max_len, bos)


def trim(tokens: torch.Tensor) -> torch.Tensor:
    """Drop leading columns that are padding in every row (left padding: no work lost)."""
    used = (tokens != PAD).any(dim=0)
    first = int(used.to(torch.int8).argmax()) if bool(used.any()) else tokens.shape[1] - 1
    return tokens[:, first:]


@dataclass
class SequenceBatches:
    """Whole-sequence training examples, one per user with training items, kept compact.

    Each example is its user's *window*: the last ``max_len + 1`` tokens of
    ``[BOS, s1 + 1, ..., sn + 1]``, all windows end to end in one flat int32 array
    (``tokens``, with ``offsets`` into it, CSR-like). The inputs are a window without its
    last token and the targets (as ``item_idx``) the window without its first, so one
    array holds both and there is no padding: ``sum(min(n, max_len) + 1)`` int32 tokens
    instead of two dense ``(users, max_len)`` int64 matrices. Built once per fit; an
    epoch only permutes example indices, and ``batch`` gathers its rows, left-padded to
    the batch's longest row. ``save``/``open`` keep the two arrays in ``.npy`` files read
    back memory-mapped, so the arrays need not live in RAM at all.
    """

    tokens: np.ndarray  # (total,) int32: every example's window, end to end
    offsets: np.ndarray  # (n + 1,) int64: example r's window is tokens[offsets[r]:offsets[r + 1]]

    @classmethod
    def from_log(cls, train: Interactions, max_len: int) -> SequenceBatches:
        indptr = train.user_indptr
        users = np.flatnonzero(np.diff(indptr) > 0)
        starts, ends = indptr[users], indptr[users + 1]
        bos = train.n_items + 1
        taken = np.minimum(ends - starts + 1, max_len + 1)  # window length: BOS included while it fits
        offsets = np.zeros(len(users) + 1, dtype=np.int64)
        np.cumsum(taken, out=offsets[1:])
        total = int(offsets[-1])
        position = np.arange(total, dtype=np.int64) - np.repeat(offsets[:-1], taken)  # inside the window
        source = np.repeat(ends - taken, taken) + position  # index into the log (a BOS slot is set below)
        with_bos = ends - starts <= max_len  # short histories keep their BOS: window = [BOS] + items
        tokens = np.empty(total, dtype=np.int32)
        tokens[:] = np.asarray(train.item_idx)[np.maximum(source, 0)] + 1
        tokens[offsets[:-1][with_bos]] = bos
        return cls(tokens, offsets)

    @classmethod
    def open(cls, directory: str | Path) -> SequenceBatches:
        """The arrays ``save`` wrote to ``directory``, memory-mapped read-only."""
        directory = Path(directory)
        return cls(np.load(directory / "tokens.npy", mmap_mode="r"), np.load(directory / "offsets.npy", mmap_mode="r"))

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        np.save(directory / "tokens.npy", self.tokens)
        np.save(directory / "offsets.npy", self.offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        """``(n,)`` positions with a next item per example (for length bucketing)."""
        return np.diff(self.offsets) - 1

    def batch(self, index: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """``(inputs, targets)``, both ``(len(index), width)`` int64, ``width`` the longest
        row; inputs left-padded with ``PAD``, targets with ``IGNORE``."""
        index = np.asarray(index)
        starts = np.asarray(self.offsets[index], dtype=np.int64)
        lengths = np.asarray(self.offsets[index + 1], dtype=np.int64) - starts - 1
        width = int(lengths.max())
        rows = np.repeat(np.arange(len(index)), lengths)
        position = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        cols = np.repeat(width - lengths, lengths) + position
        source = np.repeat(starts, lengths) + position
        inputs = np.zeros((len(index), width), dtype=np.int64)
        targets = np.full((len(index), width), IGNORE, dtype=np.int64)
        inputs[rows, cols] = self.tokens[source]
        targets[rows, cols] = np.asarray(self.tokens[source + 1], dtype=np.int64) - 1
        return torch.from_numpy(inputs), torch.from_numpy(targets)


class SequenceRecommender(NeuralRecommender):
    """Shared machinery of next-item models; the network must provide
    ``encode(tokens) -> (b, w, d)`` (the state after each position) and ``items``, an
    :class:`ItemTable` (input embeddings and the tied ``(n_items, d)`` output table).

    The config must have ``max_len``, ``loss``, ``n_negatives``, ``negatives``,
    ``text_init`` and ``train`` fields, and may have ``train_data_dir`` (memory-mapped
    training examples, see :class:`SequenceBatches`).
    """

    def prepare(self, train: Interactions) -> None:
        cfg = self.config
        counts = distributed.item_counts(train).astype(np.float64)  # the whole log's, when split by user
        if cfg.negatives == "popularity":
            q = (counts + 1.0) / (counts + 1.0).sum()  # +1: every item can be drawn
        else:
            q = np.full(self.n_items, 1.0 / self.n_items)
        self._negative_q = torch.from_numpy(q.astype(np.float32))
        self.text_embeddings_ = self.item_text_embeddings() if cfg.text_init else None

    # --- text hook ------------------------------------------------------------------------------------
    def item_text_embeddings(self) -> np.ndarray:
        """``(n_items, d_text)`` text embeddings of the items, row ``i`` for ``item_idx`` i,
        used when ``text_init`` is on: ``item_features_.texts()`` through the cached
        sentence-transformer of :mod:`recloop.text` (model ``text_model``, default
        all-MiniLM-L6-v2). Override to supply other embeddings."""
        if self.item_features_ is None or not self.item_features_.text:
            raise ConfigError(f"{self.name}.text_init needs item features with text; this dataset has none "
                              "(amazon-beauty ships no item text) - set text_init = false")
        try:
            from recloop.text import TextEncoder, embed_features
        except ImportError as error:
            raise ConfigError(f"{self.name}.text_init needs the text encoder (pip install 'recloop[text]'): "
                              f"{error}") from None
        model = getattr(self.config, "text_model", "")
        encoder = TextEncoder(model=model) if model else TextEncoder()
        return np.asarray(embed_features(self.item_features_, encoder), dtype=np.float32)

    def _text_tensor(self) -> torch.Tensor | None:
        text = getattr(self, "text_embeddings_", None)
        if text is None:
            return None
        text = np.asarray(text, dtype=np.float32)
        if text.shape[0] != self.n_items:
            raise ConfigError(f"{self.name}: text embeddings have {text.shape[0]} rows for {self.n_items} items")
        return torch.from_numpy(text)

    # --- training ---------------------------------------------------------------------------------
    def training_data(self, train: Interactions) -> SequenceBatches:
        data = SequenceBatches.from_log(train, self.config.max_len)
        directory = getattr(self.config, "train_data_dir", "")
        if not directory:
            return data
        data.save(directory)
        return SequenceBatches.open(directory)

    def loss(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        inputs, targets = batch
        hidden = self.network_.encode(inputs)  # (b, w, d)
        valid = targets != IGNORE
        hidden, targets = hidden[valid], targets[valid]  # (n, d), (n,): positions with a next item
        table = self.network_.items.table()  # (n_items, d)
        if self.config.loss == "ce":
            logits = hidden @ table.T  # (n, n_items)
            return F.cross_entropy(logits.float(), targets)
        return self._sampled_softmax(hidden, targets, table)

    def _sampled_softmax(self, hidden: torch.Tensor, targets: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        q = self._negative_q.to(hidden.device)
        negatives = torch.multinomial(q, self.config.n_negatives, replacement=True)  # (k,)
        log_q = torch.log(q * self.config.n_negatives)
        positive = (hidden * table[targets]).sum(-1, keepdim=True) - log_q[targets, None]  # (n, 1)
        negative = hidden @ table[negatives].T - log_q[negatives]  # (n, k)
        negative = negative.masked_fill(negatives[None, :] == targets[:, None], float("-inf"))
        logits = torch.cat([positive, negative], dim=1).float()  # the target is class 0
        return F.cross_entropy(logits, torch.zeros(len(targets), dtype=torch.long, device=hidden.device))

    # --- scoring ----------------------------------------------------------------------------------
    def user_vectors(self, user_idx: np.ndarray, history: UserHistories | None = None) -> np.ndarray:
        """``(b, d)`` query vectors: ``score == user_vectors @ item_vectors().T``."""
        self._check_fitted("user_vectors")
        user_idx = np.asarray(user_idx, dtype=np.int64).reshape(-1)
        if history is None:
            history = self.history_.histories(user_idx)
        with self.inference():
            return self._query(history).float().cpu().numpy()

    def item_vectors(self) -> np.ndarray:
        """``(n_items, d)``: the output item table (tied with the input embeddings)."""
        self._check_fitted("item_vectors")
        with torch.no_grad():
            return self.network_.items.table().float().cpu().numpy()

    def text_to_item_vectors(self, text_embeddings: np.ndarray) -> np.ndarray:
        """Item vectors for items known only by text (``text_init`` models): the learned
        projection of their text embeddings, the text part of a trained item's vector."""
        self._check_fitted("text_to_item_vectors")
        projection = self.network_.items.text_projection
        if projection is None:
            raise ConfigError(f"{self.name} was trained without text_init; it cannot place items from text")
        with torch.no_grad():
            text = torch.as_tensor(np.asarray(text_embeddings, dtype=np.float32), device=self.device)
            return projection(text).float().cpu().numpy()

    def _query(self, history: UserHistories, chunk: int = 256) -> torch.Tensor:
        """``(b, d)``: the state after each user's last item. Rows are encoded in chunks of
        similar length, each trimmed to its longest row, so a few long histories do not
        make every row pay for ``max_len`` positions (each row's result is independent of
        the others: padding is masked and positions count from the newest item)."""
        tokens = torch.from_numpy(history_tokens(history, self.config.max_len, self.n_items + 1))
        order = torch.from_numpy(np.argsort(np.minimum(history.lengths, self.config.max_len), kind="stable"))
        out = None
        for start in range(0, len(order), chunk):
            rows = order[start:start + chunk]
            state = self.network_.encode(trim(tokens[rows]).to(self.device))[:, -1]  # (chunk, d)
            if out is None:
                out = torch.empty(len(order), state.shape[1], dtype=state.dtype, device=state.device)
            out[rows.to(state.device)] = state
        if out is None:  # no rows
            return torch.empty(0, self.network_.items.embedding.embedding_dim, device=self.device)
        return out

    def score_batch(self, user_idx: np.ndarray, history: UserHistories) -> torch.Tensor:
        return self._query(history) @ self.network_.items.table().T  # (b, n_items)

    # --- persistence ------------------------------------------------------------------------------
    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        # A text-initialised network keeps its text embeddings as a buffer; rebuild with it.
        self.text_embeddings_ = state.get("network.items.text_embeddings")
        super()._set_state(state)


def check_sequence_config(owner: str, max_len: int, dropout: float, loss: str, negatives: str,
                          n_negatives: int) -> None:
    """Value checks shared by the sequence model configs (names the field and the fix)."""
    if max_len < 1:
        raise ConfigError(f"{owner}.max_len must be at least 1, got {max_len}")
    if not 0 <= dropout < 1:
        raise ConfigError(f"{owner}.dropout must be in [0, 1), got {dropout}")
    if loss not in LOSSES:
        raise ConfigError(f"{owner}.loss must be one of {LOSSES}, got {loss!r}")
    if negatives not in NEGATIVE_SAMPLERS:
        raise ConfigError(f"{owner}.negatives must be one of {NEGATIVE_SAMPLERS}, got {negatives!r}")
    if n_negatives < 1:
        raise ConfigError(f"{owner}.n_negatives must be at least 1, got {n_negatives}")


class ItemTable(nn.Module):
    """Item input embeddings (with PAD and BOS rows) and the tied output table.

    ``forward(tokens)`` embeds tokens; ``table()`` is the ``(n_items, d)`` output matrix.
    With ``text`` (``(n_items, d_text)``) each item's vector is ``E_id + W t``.
    """

    def __init__(self, n_items: int, dim: int, text: torch.Tensor | None = None):
        super().__init__()
        self.n_items = n_items
        self.embedding = nn.Embedding(n_items + 2, dim, padding_idx=PAD)  # 0 PAD, 1..n items, n+1 BOS
        nn.init.normal_(self.embedding.weight, std=0.02)
        with torch.no_grad():
            self.embedding.weight[PAD].zero_()
        if text is not None:
            self.register_buffer("text_embeddings", text.clone())
            self.text_projection = nn.Linear(text.shape[1], dim, bias=False)
            nn.init.normal_(self.text_projection.weight, std=0.02 / max(1.0, float(text.std() * text.shape[1] ** 0.5)))
        else:
            self.text_embeddings = None
            self.text_projection = None

    def table(self) -> torch.Tensor:
        items = self.embedding.weight[1:self.n_items + 1]  # (n_items, d)
        if self.text_projection is not None:
            items = items + self.text_projection(self.text_embeddings)
        return items

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embedding(tokens)  # (b, w, d)
        if self.text_projection is not None:
            text = self.text_projection(self.text_embeddings)  # (n_items, d)
            # Add the text part to item tokens only (PAD and BOS have no text).
            is_item = (tokens > PAD) & (tokens <= self.n_items)
            x = x + torch.where(is_item[..., None], text[(tokens - 1).clamp(0, self.n_items - 1)], 0.0)
        return x
