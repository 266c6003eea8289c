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
from typing import Self

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recloop.data.features import Features
from recloop.data.interactions import Interactions, UserHistories
from recloop.errors import ConfigError
from recloop.models.neural import NeuralRecommender
from recloop.models.text_adaptor import ITEM_REPRESENTATIONS, MoEAdaptor
from recloop.train import distributed
from recloop.utils import seed_everything

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
        trained = counts > 0
        # Items without training interactions are never drawn as negatives (see loss()).
        if cfg.negatives == "popularity":
            q = (counts + 1.0) * trained  # +1: every trained item can be drawn
        else:
            q = trained.astype(np.float64)
        self._negative_q = torch.from_numpy((q / q.sum()).astype(np.float32))
        self._trained = torch.from_numpy(trained)
        self.text_embeddings_ = self.item_text_embeddings() if item_representation(cfg) != "id" else None

    def _prepare_network(self, network: nn.Module) -> nn.Module:
        """At fit time (after :meth:`prepare`): zero the id embeddings of items without
        training interactions, and start from ``init_from``'s weights when the config names
        a pretrained model. A network rebuilt to load saved state is left as it is."""
        trained = getattr(self, "_trained", None)
        if trained is None:
            return network
        network.items.mask_untrained(trained)
        source = getattr(self.config, "init_from", "")
        if source:
            transfer_weights(network, read_network_state(source), source)
            if getattr(self.config, "freeze_encoder", False):
                # UniSRec's parameter-efficient fine-tuning: the sequence encoder stays as
                # pretrained; only the item side (adaptor, id and start embeddings) learns.
                for name, parameter in network.named_parameters():
                    parameter.requires_grad_(name.startswith("items."))
        return network

    # --- text hook ------------------------------------------------------------------------------------
    def item_text_embeddings(self) -> np.ndarray:
        """``(n_items, d_text)`` text embeddings of the items, row ``i`` for ``item_idx`` i,
        used when ``text_init`` is on: ``item_features_.texts()`` through the cached
        sentence-transformer of :mod:`recloop.text` (model ``text_model``, default
        all-MiniLM-L6-v2). Override to supply other embeddings."""
        if self.item_features_ is None or not self.item_features_.text:
            raise ConfigError(f"{self.name}: item_repr = {item_representation(self.config)!r} (or text_init) needs "
                              "item features with text; this dataset has none - use item_repr = 'id'")
        try:
            from recloop.text import TextEncoder, embed_features
        except ImportError as error:
            raise ConfigError(f"{self.name}.text_init needs the text encoder (pip install 'recloop[text]'): "
                              f"{error}") from None
        model = getattr(self.config, "text_model", "")
        encoder = TextEncoder(model=model) if model else TextEncoder()
        fields = tuple(getattr(self.config, "text_fields", ())) or None
        return np.asarray(embed_features(self.item_features_, encoder, fields), dtype=np.float32)

    def _text_tensor(self) -> torch.Tensor | None:
        text = getattr(self, "text_embeddings_", None)
        if text is None:
            return None
        text = np.asarray(text, dtype=np.float32)
        if text.shape[0] != self.n_items:
            raise ConfigError(f"{self.name}: text embeddings have {text.shape[0]} rows for {self.n_items} items")
        return torch.from_numpy(text)

    # --- training ---------------------------------------------------------------------------------
    def fit_zero_shot(self, train: Interactions, *, item_features: Features | None = None) -> Self:
        """Fitted without training: the network built for ``train``'s catalog (its item
        text embedded as in fit) with ``init_from``'s weights, as a model pretrained on
        another catalog ranks this one zero-shot. Needs ``init_from`` and item text
        (``item_repr = "text"``; a fused model's id vectors would be untrained noise)."""
        if not getattr(self.config, "init_from", "") or item_representation(self.config) != "text":
            raise ConfigError(f"{self.name}.fit_zero_shot needs init_from (a pretrained model) and "
                              f"item_repr = 'text'; got init_from={getattr(self.config, 'init_from', '')!r}, "
                              f"item_repr={item_representation(self.config)!r}")
        self._remember(train, item_features, None)
        seed_everything(self.config.train.seed)
        self.prepare(train)
        self.network_ = self.build_network().eval()
        return self

    def training_data(self, train: Interactions) -> SequenceBatches:
        data = SequenceBatches.from_log(train, self.config.max_len)
        directory = getattr(self.config, "train_data_dir", "")
        if not directory:
            return data
        data.save(directory)
        return SequenceBatches.open(directory)

    def loss(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        inputs, targets = batch
        items, negatives, rows = self.network_.items, None, None
        if self.config.loss == "sampled" and items.text_projection is not None:
            # The adaptor runs on the rows this step reads only: its inputs, targets and negatives.
            negatives = self._draw_negatives(inputs.device)
            rows = torch.unique(torch.cat([inputs[(inputs > PAD) & (inputs <= self.n_items)] - 1,
                                           targets[targets != IGNORE], negatives]))
        table = items.table(rows)  # (n_items, d), only ``rows`` filled when given
        hidden = self.network_.encode(inputs, table)  # (b, w, d)
        valid = targets != IGNORE
        hidden, targets = hidden[valid], targets[valid]  # (n, d), (n,): positions with a next item
        hidden, table = self._logit_space(hidden, table)
        if self.config.loss == "ce":
            logits = hidden @ table.T  # (n, n_items)
            # Items without training interactions are no class of the training softmax:
            # pushing them down would teach the model that their text is never wanted.
            logits = logits.float().masked_fill(~self._trained.to(logits.device), float("-inf"))
            return F.cross_entropy(logits, targets)
        return self._sampled_softmax(hidden, targets, table, negatives)

    def _logit_space(self, query: torch.Tensor, table: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(query, table)`` whose dot products are the logits: as they are, or, with
        ``temperature > 0``, both L2-normalised and the query divided by the temperature
        (cosine logits, as UniSRec scores its text-based items)."""
        temperature = getattr(self.config, "temperature", 0.0)
        if temperature > 0:
            return F.normalize(query, dim=-1) / temperature, F.normalize(table, dim=-1)
        return query, table

    def _draw_negatives(self, device: torch.device) -> torch.Tensor:
        return torch.multinomial(self._negative_q.to(device), self.config.n_negatives, replacement=True)  # (k,)

    def _sampled_softmax(self, hidden: torch.Tensor, targets: torch.Tensor, table: torch.Tensor,
                         negatives: torch.Tensor | None = None) -> torch.Tensor:
        q = self._negative_q.to(hidden.device)
        if negatives is None:
            negatives = self._draw_negatives(hidden.device)
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
            query, _ = self._logit_space(self._query(history), self.network_.items.table()[:1])
            return query.float().cpu().numpy()

    def item_vectors(self) -> np.ndarray:
        """``(n_items, d)``: the output item table (tied with the input embeddings),
        normalised when the logits are cosines."""
        self._check_fitted("item_vectors")
        with self.inference():
            table = self.network_.items.table()
            return self._logit_space(table[:1], table)[1].float().cpu().numpy()

    def text_to_item_vectors(self, text_embeddings: np.ndarray) -> np.ndarray:
        """Item vectors for items known only by text (``text_init`` models): the learned
        projection of their text embeddings, the text part of a trained item's vector."""
        self._check_fitted("text_to_item_vectors")
        projection = self.network_.items.text_projection
        if projection is None:
            raise ConfigError(f"{self.name} was trained without text (item_repr = 'id', text_init off); it cannot "
                              "place items from text")
        with self.inference():
            text = torch.as_tensor(np.asarray(text_embeddings, dtype=np.float32), device=self.device)
            vectors = projection(text)
            return self._logit_space(vectors[:1], vectors)[1].float().cpu().numpy()

    def _query(self, history: UserHistories, chunk: int = 256, table: torch.Tensor | None = None) -> torch.Tensor:
        """``(b, d)``: the state after each user's last item. Rows are encoded in chunks of
        similar length, each trimmed to its longest row, so a few long histories do not
        make every row pay for ``max_len`` positions (each row's result is independent of
        the others: padding is masked and positions count from the newest item)."""
        tokens = torch.from_numpy(history_tokens(history, self.config.max_len, self.n_items + 1))
        order = torch.from_numpy(np.argsort(np.minimum(history.lengths, self.config.max_len), kind="stable"))
        out = None
        for start in range(0, len(order), chunk):
            rows = order[start:start + chunk]
            state = self.network_.encode(trim(tokens[rows]).to(self.device), table)[:, -1]  # (chunk, d)
            if out is None:
                out = torch.empty(len(order), state.shape[1], dtype=state.dtype, device=state.device)
            out[rows.to(state.device)] = state
        if out is None:  # no rows
            return torch.empty(0, self.network_.items.embedding.embedding_dim, device=self.device)
        return out

    def score_batch(self, user_idx: np.ndarray, history: UserHistories) -> torch.Tensor:
        table = self.network_.items.table()  # (n_items, d)
        query, table = self._logit_space(self._query(history, table=table), table)
        return query @ table.T  # (b, n_items)

    # --- persistence ------------------------------------------------------------------------------
    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        # A text-initialised network keeps its text embeddings as a buffer; rebuild with it.
        self.text_embeddings_ = state.get("network.items.text_embeddings")
        super()._set_state(state)


def item_representation(config) -> str:
    """The item representation a sequence config asks for: ``item_repr``, where the
    older switch ``text_init = true`` means ``"fused"`` (id embedding plus text)."""
    item_repr = getattr(config, "item_repr", "id")
    return "fused" if item_repr == "id" and getattr(config, "text_init", False) else item_repr


def read_network_state(source: str | Path) -> dict[str, np.ndarray]:
    """The network weights of a saved recloop artifact (``state.safetensors`` in the
    folder ``source``), without the ``network.`` prefix."""
    from safetensors.numpy import load_file

    path = Path(source) / "state.safetensors"
    if not path.is_file():
        raise ConfigError(f"init_from = {str(source)!r} is not a saved model folder (no {path.name}); save one "
                          "with `recloop train CONFIG --output DIR` or model.save(DIR)")
    prefix = "network."
    return {k[len(prefix):]: v for k, v in load_file(str(path)).items() if k.startswith(prefix)}


#: Network entries that belong to one catalog, never transferred: the id table (only its
#: BOS row is), the frozen text embeddings and the trained-items mask.
CATALOG_STATE = ("items.embedding.weight", "items.text_embeddings", "items.id_mask")


def transfer_weights(network: nn.Module, state: dict[str, np.ndarray], source: str = "the pretrained model") -> None:
    """Load every catalog-independent weight of ``state`` into ``network`` (transformer,
    positions, adaptor, BOS embedding), for a model pretrained on another catalog. Every
    such weight must be there with the same shape: a silent partial transfer would hide
    a mismatch of sizes."""
    own = network.state_dict()
    wanted = [k for k in own if k not in CATALOG_STATE]
    problems = [f"{k} (missing)" for k in wanted if k not in state]
    problems += [f"{k} {tuple(state[k].shape)} != {tuple(own[k].shape)}" for k in wanted
                 if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if problems:
        raise ConfigError(f"init_from: {source} does not match this network: {', '.join(problems[:6])}; it must "
                          "have the same sizes and item_repr 'text' or 'fused'")
    with torch.no_grad():
        for k in wanted:
            own[k].copy_(torch.from_numpy(np.array(state[k])))
        table = torch.from_numpy(np.array(state["items.embedding.weight"]))
        own["items.embedding.weight"][-1].copy_(table[-1])  # BOS is the last row of every catalog


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
    The item part of both is chosen by ``item_repr``:

    * ``"id"``: a learned id embedding ``E_id[i]``;
    * ``"text"``: ``A(t_i)``, the frozen text embedding ``t_i`` (``text``, ``(n_items,
      d_text)``) through the learned adaptor ``A`` (:class:`MoEAdaptor`); no per-item
      parameter at all, so the model transfers to another catalog;
    * ``"fused"``: ``E_id[i] + A(t_i)`` (UniSRec's transductive setting).

    ``id_mask`` (``n_items + 2``, 1 for PAD/BOS) zeroes the id embedding of items without
    training interactions: an untrained id vector is noise, so such an item is its text
    part alone (fused), or the zero vector (id-only: every such item scores 0).
    """

    def __init__(self, n_items: int, dim: int, text: torch.Tensor | None = None, item_repr: str = "id",
                 n_experts: int = 8, adaptor_dropout: float = 0.2, id_dropout: float = 0.0):
        super().__init__()
        self.id_dropout = id_dropout
        if item_repr not in ITEM_REPRESENTATIONS:
            raise ConfigError(f"item_repr must be one of {ITEM_REPRESENTATIONS}, got {item_repr!r}")
        if item_repr != "id" and text is None:
            raise ConfigError(f"item_repr = {item_repr!r} needs text embeddings of the items")
        self.n_items = n_items
        self.item_repr = item_repr
        self.embedding = nn.Embedding(n_items + 2, dim, padding_idx=PAD)  # 0 PAD, 1..n items, n+1 BOS
        nn.init.normal_(self.embedding.weight, std=0.02)
        with torch.no_grad():
            self.embedding.weight[PAD].zero_()
        self.register_buffer("id_mask", torch.ones(n_items + 2))
        if item_repr != "id":
            self.register_buffer("text_embeddings", text.clone())
            self.text_projection = MoEAdaptor(text.shape[1], dim, n_experts, adaptor_dropout)
        else:
            self.text_embeddings = None
            self.text_projection = None

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Artifacts written before id_mask existed used every item's id vector.
        state_dict.setdefault(prefix + "id_mask", torch.ones_like(self.id_mask))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def mask_untrained(self, trained: torch.Tensor) -> None:
        """Zero (now and for good) the id embeddings of items whose ``trained`` is False."""
        with torch.no_grad():
            self.id_mask[1:self.n_items + 1] = trained.to(self.id_mask.dtype)

    def _ids(self) -> torch.Tensor:
        return self.embedding.weight[1:self.n_items + 1] * self._id_keep(1 + torch.arange(  # (n_items, d)
            self.n_items, device=self.id_mask.device))

    def _id_keep(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(r, 1)``: 1 where an item's id vector is used, 0 where it has none (untrained)
        or, in training with ``id_dropout``, where this step drops it, so that the model
        also learns to score items by their text alone, as it must score cold items."""
        keep = self.id_mask[tokens]
        if self.training and self.id_dropout > 0:
            keep = keep * (torch.rand(keep.shape, device=keep.device) >= self.id_dropout)
        return keep[:, None]

    def text_vectors(self) -> torch.Tensor:
        """``(n_items, d)``: the adaptor's image of every item's text."""
        return self.text_projection(self.text_embeddings)

    def table(self, rows: torch.Tensor | None = None) -> torch.Tensor:
        """``(n_items, d)``; with ``rows`` (item_idx) only those rows are computed, the
        others are zero (a sampled softmax reads no other)."""
        if rows is None:
            if self.text_projection is None:
                return self._ids()  # (n_items, d)
            text = self.text_vectors()  # (n_items, d)
            return text if self.item_repr == "text" else self._ids() + text
        part = self.text_projection(self.text_embeddings[rows]) if self.text_projection is not None else 0.0
        if self.item_repr != "text":
            part = part + self.embedding.weight[rows + 1] * self._id_keep(rows + 1)  # (r, d)
        out = torch.zeros(self.n_items, self.embedding.embedding_dim, dtype=part.dtype, device=part.device)
        return out.index_copy(0, rows, part)

    def forward(self, tokens: torch.Tensor, table: torch.Tensor | None = None) -> torch.Tensor:
        """``(b, w, d)`` input embeddings: rows of ``table`` (default :meth:`table`; pass it
        when the caller has it, so the adaptor runs once per step) for item tokens, the
        learned PAD/BOS embeddings otherwise."""
        if table is None:
            table = self.table()  # (n_items, d)
        is_item = (tokens > PAD) & (tokens <= self.n_items)  # (b, w)
        items = table[(tokens - 1).clamp(0, self.n_items - 1)]  # (b, w, d)
        return torch.where(is_item[..., None], items, self.embedding(tokens))
