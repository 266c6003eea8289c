"""Settings of a serving process: what to serve, where events go, limits, stages.

Plain frozen dataclasses like every recloop config, each stage's config defined in its
stage's module. ``recloop serve`` builds one from a TOML file (:func:`load_serve_settings`,
the typed loader every recloop config goes through, with ``--set key=value``
overrides) and hands it to each worker process as JSON in ``RECLOOP_SERVE_SETTINGS``;
tests build one directly. The environment is read in one place, :meth:`ServeSettings.from_json`
(the workers' path): ``RECLOOP_API_KEY`` supplies the key when the JSON has none, so
the key need not appear on a command line.

Importing this module is light (no torch, faiss or fastapi): a CLI or a config check
can build settings without loading a model stack.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recloop.errors import ConfigError
from recloop.rank.fairness import FairnessConfig
from recloop.serve.events import EventPolicy
from recloop.serve.explain import ExplainConfig
from recloop.serve.explore import ExploreConfig
from recloop.serve.online import OnlineConfig
from recloop.serve.pipeline import PipelineConfig
from recloop.serve.privacy import PrivacySettings
from recloop.serve.rerank import RerankConfig
from recloop.serve.retrieval import RetrievalConfig
from recloop.serve.social import SocialConfig
from recloop.typed_config import apply_override, from_dict, read_toml

ENV_VAR = "RECLOOP_SERVE_SETTINGS"
#: The API key, when the settings carry none (keeps it off command lines and out of ``ps``).
API_KEY_VAR = "RECLOOP_API_KEY"


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
    or ``postgresql://`` URL; empty: ``recloop.serve.store.default_db_path(artifact)``,
    one file per artifact folder in a data directory, never the working directory). ``api_key``: when set, write and admin endpoints need it
    in the ``X-API-Key`` header. ``sqlite_synchronous``: ``full`` (fsync each group
    commit) or ``normal``. ``watch``: seconds between checks of the artifact directory
    for a new version (0: no watching; ``POST /admin/reload`` always works).
    ``text_model``: the text encoder for cold items (default: the bundled MiniLM);
    ``text_cache``: its embedding cache folder (default ``~/.cache/recloop/embeddings``).
    ``torch_threads``: intra-op threads per process (1: requests run in parallel
    instead). ``host``/``port``/``workers``: for ``recloop serve``. ``fairness``:
    calibration and an exposure quota per item group (:mod:`recloop.serve.fairness`).
    ``online``: impression logging and a second arm for A/B tests or interleaving
    (:mod:`recloop.serve.online`). ``privacy``: retention and pseudonyms
    (:class:`~recloop.serve.privacy.PrivacySettings`).
    """

    artifact: str
    db: str = ""
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
    fairness: FairnessConfig = field(default_factory=FairnessConfig)
    online: OnlineConfig = field(default_factory=OnlineConfig)
    privacy: PrivacySettings = field(default_factory=PrivacySettings)
    social: SocialConfig = field(default_factory=SocialConfig)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str, environ: Mapping[str, str] | None = None) -> ServeSettings:
        """Settings from :meth:`to_json`; without an ``api_key`` there, the key comes
        from ``RECLOOP_API_KEY`` in ``environ`` (default: the process environment)."""
        raw = json.loads(text)
        environ = os.environ if environ is None else environ
        if not raw.get("api_key") and environ.get(API_KEY_VAR):
            raw["api_key"] = environ[API_KEY_VAR]
        return settings_from_dict(raw)


def settings_from_dict(raw: Mapping[str, Any], where: str = "serve.") -> ServeSettings:
    """:class:`ServeSettings` from a plain tree, names and types checked."""
    return from_dict(ServeSettings, raw, where)


def load_serve_settings(path: str | Path | None = None, overrides: Sequence[str] = (),
                        **fields: Any) -> ServeSettings:
    """Settings from a TOML file (optional), then ``fields`` (e.g. the CLI's artifact,
    host, port), then ``overrides`` (``"retrieval.index=hnsw"``, parsed as TOML values):
    one typed path for every way of configuring a server. Unknown keys are a
    :class:`ConfigError` naming the closest valid one."""

    raw: dict[str, Any] = {}
    if path is not None:
        raw = read_toml(Path(path))
        raw.pop("name", None)  # read_toml adds the file's stem; settings have no name
    raw.update({key: value for key, value in fields.items() if value is not None})
    for override in overrides:
        apply_override(raw, override)
    if "artifact" not in raw:
        raise ConfigError("serve settings need an artifact (the model directory to serve)")
    try:
        return settings_from_dict(raw, "")
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}" if path is not None else str(error)) from None


def is_local_host(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def exposure_warning(settings: ServeSettings) -> str | None:
    """A warning when the server listens beyond this machine without an API key (anyone
    who can reach it may then write events, add items and reload models), else ``None``."""
    if settings.api_key or is_local_host(settings.host):
        return None
    return (f"serving on {settings.host}, reachable from other machines, without an API key: anyone who can "
            f"connect may write events, add items and reload the model; set {API_KEY_VAR} (or --api-key)")
