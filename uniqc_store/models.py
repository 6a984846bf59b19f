"""The ORM models, by their public name (``TaskRow``, ``ArchivedTaskRow``,
``TaskShardRow``, ``ArchivedTaskShardRow``, ``Base``): defined in
``uniqc_store.schema.orm``."""

from __future__ import annotations

from uniqc_store.schema.orm import *  # noqa: F403
from uniqc_store.schema.orm import __all__ as __all__
