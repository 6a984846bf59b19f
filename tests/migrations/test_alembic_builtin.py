"""pytest-alembic's built-in checks, on every engine."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.config import Config
from pytest_alembic.tests import (  # noqa: F401  (collected as tests here)
    test_model_definitions_match_ddl,
    test_single_head_revision,
    test_up_down_consistency,
    test_upgrade,
)
from sqlalchemy import Engine

from tests.conftest import BACKENDS, scratch_url
from uniqc_store.db.engine import create_store_engine
from uniqc_store.migrations.runner import make_config


@pytest.fixture
def alembic_config() -> Config:
    return make_config()


@pytest.fixture(params=BACKENDS)
def alembic_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    with scratch_url(request.param, tmp_path) as url:
        engine = create_store_engine(url, foreign_keys=False)
        yield engine
        engine.dispose()
