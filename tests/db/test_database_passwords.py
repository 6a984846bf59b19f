"""No database password in any message, exception chain or command output,
whatever the URL's shape (query-string passwords, unencoded ``@`` and ``:``,
malformed URLs), and upgrade hints that can be run as printed."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import make_url

from tests.conftest import scratch_url
from uniqc_store import SchemaOutOfDateError, StoreError, TaskStore
from uniqc_store.cli.commands import main
from uniqc_store.db.engine import create_store_engine
from uniqc_store.db.urls import parse_url, redact, redact_text
from uniqc_store.migrations.runner import upgrade, upgrade_command

# Every fragment of this password between separators is checked for.
PASSWORD = "Pq7@Zx9:Wv3@Rt5"
FRAGMENTS = [f for f in re.split(r"[@:/]", PASSWORD) if f] + [PASSWORD]
SCHEMES = ["postgresql+psycopg", "mysql+pymysql"]

# port 9 (discard): nobody listens, so opening fails after parsing
SHAPES = {
    "user-info": "{scheme}://alice:Pq7Zx9Wv3Rt5@127.0.0.1:9/db",
    "query": "{scheme}://alice@127.0.0.1:9/db?password=Pq7Zx9Wv3Rt5",
    "unencoded @ and :": "{scheme}://alice:Pq7@Zx9:Wv3@Rt5@127.0.0.1:9/db",
    "unencoded @": "{scheme}://alice:Pq7@Zx9Wv3Rt5@127.0.0.1:9/db",
    "unencoded /": "{scheme}://alice:Pq7/Zx9Wv3Rt5@127.0.0.1:9/db",
    "no host": "{scheme}://alice:Pq7Zx9Wv3Rt5",
    "unknown scheme": "nonsense://alice:Pq7Zx9Wv3Rt5@127.0.0.1/db",
    "spaces": "{scheme}://alice:Pq7 Zx9@127.0.0.1:9/db",
}
SECRETS = ["Pq7", "Zx9", "Wv3", "Rt5"]  # every URL above splits its password into these


def urls() -> Iterator[tuple[str, str]]:
    for shape, template in SHAPES.items():
        for scheme in SCHEMES:
            yield f"{shape} ({scheme})", template.format(scheme=scheme)


def chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception and everything in its ``__cause__`` / ``__context__`` chain."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo += [e for e in (current.__cause__, current.__context__) if e is not None]


def assert_no_secret(text: str) -> None:
    leaked = [s for s in SECRETS if s in text]
    assert not leaked, f"password fragment(s) {leaked} in {text!r}"


@pytest.mark.parametrize(("shape", "url"), list(urls()), ids=[i for i, _ in urls()])
def test_library_errors_never_hold_the_password(
    shape: str, url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with pytest.raises((ValueError, StoreError)) as excinfo:
        TaskStore(url=url)
    assert_no_secret(caplog.text)
    for exc in chain(excinfo.value):
        assert_no_secret(str(exc))
        assert_no_secret(repr(exc))
        assert_no_secret(" ".join(map(str, exc.args)))


@pytest.mark.parametrize(("shape", "url"), list(urls()), ids=[i for i, _ in urls()])
def test_cli_errors_never_hold_the_password(shape: str, url: str) -> None:
    result = CliRunner().invoke(main, ["list", "--url", url])
    assert result.exit_code in (2, 3)  # a --url that does not parse; a server not reached
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert_no_secret(result.output)


def test_an_unencoded_at_sign_is_refused_with_the_fix() -> None:
    with pytest.raises(ValueError, match="percent-encode it as %40") as excinfo:
        parse_url("postgresql+psycopg://alice:Pq7@Zx9@db.example/tasks")
    assert_no_secret(str(excinfo.value))
    with pytest.raises(ValueError, match="not a database URL") as excinfo:
        parse_url("postgresql+psycopg://alice:Pq7@Zx9:Wv3@Rt5@db.example/tasks")
    assert excinfo.value.__context__ is None and excinfo.value.__cause__ is None


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://alice:Pq7Zx9@db/x",
        "postgresql+psycopg://alice@db/x?password=Pq7Zx9&sslmode=require",
        "mysql+pymysql://alice:Pq7%40Zx9@db/x",
        "postgresql+psycopg://alice:Pq7/Zx9@db/x",
    ],
)
def test_redact_hides_every_password(url: str) -> None:
    shown = redact(make_url(url))
    assert "Pq7" not in shown and "Zx9" not in shown and "alice" in shown and "db/x" in shown
    assert "Pq7" not in redact(url) and "Pq7" not in redact_text(f"connecting to {url} failed")


def test_a_masked_url_is_never_offered_as_a_command() -> None:
    hint = upgrade_command("postgresql+psycopg://alice:Pq7Zx9@db/x")
    assert "***" not in hint and "Pq7" not in hint
    assert hint.startswith("UNIQC_STORE_URL=<your url> uniqc-store upgrade")
    hint = upgrade_command("postgresql+psycopg://alice@db/x?password=Pq7Zx9")
    assert "***" not in hint and "Pq7" not in hint and "UNIQC_STORE_URL" in hint
    # no secret in the URL: the command is complete and can be pasted as printed
    assert upgrade_command("postgresql+psycopg://alice@db/x").startswith(
        "uniqc-store upgrade --url postgresql+psycopg://alice@db/x"
    )


@pytest.mark.postgresql  # reaches the shared PostgreSQL
def test_schema_behind_head_hint_is_runnable_and_clean(tmp_path: Path) -> None:
    """On PostgreSQL (trust auth ignores the password): the hint points at UNIQC_STORE_URL."""
    with scratch_url("postgresql", tmp_path) as scratch:
        with_password = scratch.set(password="Pq7Zx9Wv3Rt5")
        engine = create_store_engine(with_password)
        upgrade(engine, "0004")
        engine.dispose()
        with pytest.raises(SchemaOutOfDateError) as excinfo:
            TaskStore(url=with_password)
        message = str(excinfo.value)
        assert_no_secret(message)
        hint = message.partition("run: ")[2]
        assert hint.startswith("UNIQC_STORE_URL=<your url> uniqc-store upgrade")
        assert "***" not in hint
        result = CliRunner().invoke(
            main, ["list", "--url", with_password.render_as_string(hide_password=False)]
        )
        assert result.exit_code == 4 and "UNIQC_STORE_URL=<your url>" in result.output
        assert_no_secret(result.output)
