"""The errors recloop raises on purpose.

Every message names the object, the bad value and the fix, so that a user reading a
one-line CLI error knows what to change without a traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class RecloopError(Exception):
    """Base class of every error recloop raises on purpose."""


class DataError(RecloopError):
    """Input data is malformed, missing, or emptied by preprocessing."""


class ArtifactError(DataError):
    """A saved model (an artifact directory) is missing a file, unreadable, or
    inconsistent: the message names the file and the problem."""


class ConfigError(RecloopError):
    """A configuration is invalid: unknown key, wrong type or out-of-range value."""


class UnknownIdError(RecloopError, KeyError):
    """An external user or item id is not in the vocabulary."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class NotFittedError(RecloopError):
    """A model was used before ``fit()`` or ``load()``."""


def closest(name: str, candidates: Iterable[str]) -> str:
    """A ``" (did you mean 'x'?)"`` suffix naming the closest candidate, or ``""``."""
    match = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.5)
    return f" (did you mean {match[0]!r}?)" if match else ""


class TrainingError(RecloopError):
    """Training cannot go on: the loss diverged (NaN/inf) or a checkpoint does not fit."""
