"""Error and warning types raised by aru.

Every error names the offending value and the fix. The CLI turns :class:`AruError` (and ``ValueError``/``TypeError``
raised on bad input) into a ``click.ClickException``.
"""

from __future__ import annotations


class AruError(Exception):
    """Base class for aru's own errors (bad input a user can fix)."""


class UnsupportedArchitectureError(AruError, ValueError):
    """The checkpoint's ``model_type`` has no ArchSpec."""


class CheckpointError(AruError, ValueError):
    """A checkpoint folder is missing files, has a corrupt shard or an inconsistent index."""


class DirectionsError(AruError, ValueError):
    """A directions file is malformed: wrong shape, not orthonormal, non-finite, wrong hidden size."""


class ProvenanceError(AruError, ValueError):
    """An output folder has no aru provenance, or its files do not match the recorded hashes."""


class AruWarning(UserWarning):
    """Warnings aru emits (approximate folds, untied embeddings, truncated prompts)."""
