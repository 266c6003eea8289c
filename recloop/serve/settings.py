"""Settings of a serving process: what to serve, where events go, limits, stages.

Plain frozen dataclasses like every recloop config. ``recloop serve`` builds one from
its flags and hands it to each worker process as JSON in ``RECLOOP_SERVE_SETTINGS``
(the only place the service reads the environment); tests build one directly.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

from recloop.errors import ConfigError
from recloop.serve.events import EventPolicy
from recloop.serve.pipeline import PipelineConfig
from recloop.serve.retrieval import RetrievalConfig
from recloop.serve.stages import ExplainConfig, ExploreConfig, RerankConfig
from recloop.typed_config import from_dict

ENV_VAR = "RECLOOP_SERVE_SETTINGS"


@dataclass(frozen=True)
class Limits:
    """What one request may ask for; beyond these the answer is a 4xx naming the limit.

    ``max_k``: items per answer. ``max_list``: ids in ``items``/``exclude`` lists and
    values per filter. ``max_batch``: events per ``POST /events``. ``max_text``:
    characters of an item's text. ``max_body_bytes``: request body size (413 above).
    """

    max_k: int = 100
    max_list: int = 500
    max_batch: int = 1000
    max_text: int = 10_000
    max_body_bytes: int = 1_000_000

    def __post_init__(self):
        for f in dataclasses.fields(self):
            if getattr(self, f.name) < 1:
                raise ConfigError(f"Limits.{f.name} must be at least 1, got {getattr(self, f.name)}")


@dataclass(frozen=True)
class ServeSettings:
    """Everything a serving process needs.

    ``artifact``: the model directory. ``db``: event store (file path, ``sqlite:///``
    or ``postgresql://`` URL). ``api_key``: when set, write and admin endpoints need it
    in the ``X-API-Key`` header. ``sqlite_synchronous``: ``full`` (fsync each group
    commit) or ``normal``. ``watch``: seconds between checks of the artifact directory
    for a new version (0: no watching; ``POST /admin/reload`` always works).
    ``text_model``: the text encoder for cold items (default: the bundled MiniLM);
    ``text_cache``: its embedding cache folder (default ``~/.cache/recloop/embeddings``).
    ``torch_threads``: intra-op threads per process (1: requests run in parallel
    instead). ``host``/``port``/``workers``: for ``recloop serve``.
    """

    artifact: str
    db: str = "recloop-events.db"
    api_key: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    sqlite_synchronous: str = "full"
    watch: float = 0.0
    text_model: str | None = None
    text_cache: str | None = None
    torch_threads: int = 1
    limits: Limits = field(default_factory=Limits)
    policy: EventPolicy = field(default_factory=EventPolicy)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    rerank: RerankConfig = field(default_factory=RerankConfig)
    explore: ExploreConfig = field(default_factory=ExploreConfig)
    explain: ExplainConfig = field(default_factory=ExplainConfig)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServeSettings:
        return from_dict(cls, json.loads(text), "serve.")
