"""Online experiments: the settings that split ``/recommend`` answers between two arms.

Three modes (:class:`OnlineConfig`):

* ``single``: the served artifact answers every request (arm ``arm_a``); answers are
  still logged as impressions, so CTR and clicks per position are known.
* ``ab``: a second artifact is loaded beside the first. A stable hash of the user id
  (salted, so that a new experiment reshuffles users) sends a ``share`` of users to arm
  ``arm_b`` and the rest to ``arm_a``; a user stays in one arm for the whole
  experiment, in every worker process. Anonymous requests (``items``) are split by
  their request id.
* ``interleave``: both arms rank for every request and team-draft interleaving
  (:mod:`recloop.rank.interleave`) merges their lists into one answer; the impression
  records the arm that placed each item.

The second arm is a :class:`~recloop.serve.service.RecommendationService` of its own on
the same event store: it sees the same live events. It does not follow ``POST
/admin/reload`` (a reload swaps arm A's artifact; arm B keeps the artifact of the
settings), so that a reload never makes both arms one model.

This module is light (settings import it); :mod:`recloop.serve.router` does the work.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from recloop.errors import ConfigError
from recloop.serve.impressions import INTERLEAVED

MODES = ("single", "ab", "interleave")


@dataclass(frozen=True)
class OnlineConfig:
    """How ``/recommend`` answers are split between arms and logged.

    ``mode``: ``single``, ``ab`` or ``interleave`` (see the module docstring).
    ``artifact``: arm B's model directory (``ab`` and ``interleave``). ``arm_a`` /
    ``arm_b``: the arms' names in impressions and reports (A is the served artifact).
    ``share``: in ``ab``, the share of users sent to arm B. ``salt``: mixed into the
    user hash; change it to reshuffle users for a new experiment. ``impressions``: log
    every answer (``false``: no impression rows; answers still carry a request id).
    ``seed``: the interleaving coin's seed (``None``: fresh randomness).
    """

    mode: str = "single"
    artifact: str = ""
    arm_a: str = "A"
    arm_b: str = "B"
    share: float = 0.5
    salt: str = "recloop"
    impressions: bool = True
    seed: int | None = None

    def __post_init__(self):
        if self.mode not in MODES:
            raise ConfigError(f"online.mode must be one of {list(MODES)}, got {self.mode!r}")
        if self.mode != "single" and not self.artifact:
            raise ConfigError(f"online.mode = {self.mode!r} needs online.artifact, the second arm's artifact "
                              "directory")
        if not (0.0 <= self.share <= 1.0):
            raise ConfigError(f"online.share must be between 0 and 1, got {self.share}")
        if not self.arm_a.strip() or not self.arm_b.strip() or self.arm_a == self.arm_b:
            raise ConfigError(f"online.arm_a and online.arm_b must be two different non-blank names, "
                              f"got {self.arm_a!r} and {self.arm_b!r}")
        if INTERLEAVED in (self.arm_a, self.arm_b):
            raise ConfigError(f"{INTERLEAVED!r} is reserved for interleaved answers; name the arms otherwise")


def bucket(salt: str, key: str) -> float:
    """A stable number in [0, 1) for ``key``: the same in every process and every run."""
    digest = hashlib.sha256(f"{salt}\x00{key}".encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0 ** 64
