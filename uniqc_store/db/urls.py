"""Database URLs: which database a store opens, and how a URL is shown.

The default is ``~/.uniqc/cache/tasks.sqlite`` (the reference's), then
``$UNIQC_STORE_URL``; a URL is parsed with a clear error, and shown everywhere
with its password and credential-like query values masked.
"""

from __future__ import annotations

import os
import shlex
import tempfile
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import URL, make_url
from sqlalchemy.exc import ArgumentError

from uniqc_store.records import DB_FILENAME, DEFAULT_CACHE_DIR
from uniqc_store.redaction import MASK, mask_text, names_a_credential

URL_ENV_VAR = "UNIQC_STORE_URL"


def default_cache_dir() -> Path:
    """``~/.uniqc/cache`` (created), else ``<tmp>/uniqc/cache`` like the reference."""
    for candidate in (DEFAULT_CACHE_DIR, Path(tempfile.gettempdir()) / "uniqc" / "cache"):
        try:
            candidate.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(candidate, os.W_OK):
            return candidate
    raise OSError(f"no usable cache directory: {DEFAULT_CACHE_DIR} is not writable")


def sqlite_url_for(path: Path) -> URL:
    """The SQLAlchemy URL of a SQLite file."""
    return URL.create("sqlite+pysqlite", database=str(path))


def resolve_url(
    url: str | URL | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    create_dirs: bool = True,
) -> URL:
    """Pick the database: ``url`` > ``cache_dir`` > ``$UNIQC_STORE_URL`` > the default file.

    ``create_dirs=False`` only names the file (commands that must not create
    anything): the default is then whichever of the two default files exists.
    """
    if url is not None:
        return parse_url(url)
    if cache_dir is not None:
        directory = Path(cache_dir).expanduser()
        if create_dirs:
            directory.mkdir(parents=True, exist_ok=True)
        return sqlite_url_for(directory / DB_FILENAME)
    from_env = os.environ.get(URL_ENV_VAR)
    if from_env:
        return parse_url(from_env)
    if not create_dirs:
        fallback = Path(tempfile.gettempdir()) / "uniqc" / "cache" / DB_FILENAME
        default = DEFAULT_CACHE_DIR / DB_FILENAME
        return sqlite_url_for(fallback if fallback.exists() and not default.exists() else default)
    return sqlite_url_for(default_cache_dir() / DB_FILENAME)


def parse_url(url: str | URL) -> URL:
    """Parse a URL; an error never shows it, since it may hold a password.

    SQLAlchemy splits user-info at the first ``@``, so an unencoded ``@`` in
    a password turns the rest of it into the host name (which the driver
    would then print): such URLs are refused, with the fix.
    """
    parsed = url if isinstance(url, URL) else _make_url(url)
    if parsed is None:
        raise ValueError(
            f"not a database URL ({_scheme_of(url)}...; the rest is not shown as it may hold "
            "a password): expected e.g. sqlite:///path/tasks.sqlite or "
            "postgresql+psycopg://user:password@host/db, with @ : / in the password "
            "percent-encoded (%40 %3A %2F)"
        )
    if parsed.host and "@" in parsed.host:
        raise ValueError(
            f"the {parsed.drivername} URL has an unencoded '@' in its password (or user "
            f"name): percent-encode it as %40, e.g. {parsed.drivername}://user:p%40ss@host/db"
        )
    return parsed


def _make_url(text: str) -> URL | None:
    """``make_url``, or None; outside the ``except`` so no exception chain keeps the text."""
    try:
        return make_url(text)
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        return None


def _scheme_of(url: object) -> str:
    """The part of a URL that cannot hold a password: its scheme, if it has one."""
    head, sep, _ = str(url).partition("://")
    return f"{head}://" if sep and head.replace("+", "").isalnum() else "''"


def redact_text(text: str) -> str:
    """Text (a URL, a message, a driver's error) with every credential in it masked.

    One set of rules for everything: :func:`uniqc_store.redaction.mask_text`
    (user-info passwords, also holding ``:`` or ``@``, ``password=`` query
    parameters, tokens).
    """
    return mask_text(text)


def redact(url: str | URL) -> str:
    """The URL as text, with its password (in the user-info or the query) shown as ``***``."""
    if not isinstance(url, URL):
        return redact_text(url)
    if url.host and "@" in url.host:  # an unencoded "@": the host starts with password text
        url = url.set(host=url.host.rpartition("@")[2])
    query = {key: MASK if names_a_credential(key) else value for key, value in url.query.items()}
    shown = url.set(query=query).render_as_string(hide_password=True)
    return shown.replace(quote(MASK), MASK)  # the query is percent-encoded


def holds_secret(url: URL) -> bool:
    """Whether ``url`` carries a password (user-info or query) that must not be printed."""
    return url.password is not None or any(names_a_credential(key) for key in url.query)


def sqlite_file_path(url: URL) -> Path | None:
    """The file behind a SQLite URL, or None for in-memory / non-SQLite URLs."""
    if url.get_backend_name() != "sqlite":
        return None
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file::memory:"):
        return None
    if url.query.get("mode") == "memory":
        return None
    if database.startswith("file:"):
        database = database[len("file:") :].split("?", 1)[0]
    return Path(database).expanduser()


def upgrade_command(url: str | URL) -> str:
    """The shell command that upgrades the database at ``url``, ready to run.

    A URL holding a password is never printed, and a masked one (``***``)
    would not work if pasted: then the command takes the URL from
    ``UNIQC_STORE_URL`` and says so.
    """
    parsed = parse_url(url)
    if holds_secret(parsed):
        return (
            f"{URL_ENV_VAR}=<your url> uniqc-store upgrade  "
            f"(or: alembic -x url=<your url> upgrade head)"
        )
    shown = shlex.quote(parsed.render_as_string(hide_password=False))
    return f"uniqc-store upgrade --url {shown}  (or: alembic -x url={shown} upgrade head)"
