"""Redaction rules (uniqc_store.redaction): which keys name a credential, which
strings hold one, and that nothing else is ever changed."""

from __future__ import annotations

import json
import string
import subprocess
import sys
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import server_url
from uniqc_store import DatabaseUnavailableError, TaskStore
from uniqc_store.records import MAX_JSON_DEPTH
from uniqc_store.redaction import (
    MASK,
    REDACTED,
    TOO_DEEP,
    mask_text,
    names_a_credential,
    redact_record,
    redact_sensitive,
)

CREDENTIAL_KEYS = [
    # plain words, every case
    "token", "key", "secret", "password", "passwd", "pwd", "passphrase", "credential",
    "credentials", "auth", "authorization", "Authorization", "AUTHORIZATION", "cookie",
    "cookies", "jwt", "bearer", "dsn", "signature", "proxy", "proxies",
    # multi-word names, every style
    "api_key", "api-key", "api.key", "api key", "apiKey", "ApiKey", "APIKey", "QUARK_API_KEY",
    "x-api-key", "X-Api-Key", "access_token", "accessToken", "refresh-token", "client_secret",
    "passWord", "PassWord", "pass_word", "db.password", "database_url", "DATABASE_URL",
    "databaseUrl", "connection_string", "connectionString", "session_id", "sessionId",
    "SESSION-ID", "private_key", "Set-Cookie", "Proxy-Authorization", "auth_token",
    "secret_key_base", "oauth", "password_hash",
    # run-together compounds
    "apikey", "APIKEY", "accesstoken", "ACCESSTOKEN", "secretkey", "SecretKey", "authtoken",
    "githubtoken", "dbpassword", "passkey", "sessionid", "apikeys",
    # Unicode compatibility forms and invisible characters
    "ｔｏｋｅｎ", "ＡＰＩ＿ＫＥＹ", "ｐａｓｓｗｏｒｄ", "pass\u200bword", "api\u2060key",
    # any mix of case, compared whole before a naming-style split (which would cut them)
    "tOkEn", "ToKeN", "TOKEn", "pAsSwOrD", "sEcReT", "aPiKeY", "X-aPi-KeY", "aCcEsS_tOkEn",
    "ＴｏＫｅＮ", "CrEdEnTiAlS",
]  # fmt: skip

ORDINARY_KEYS = [
    "region", "chip", "backend", "shots", "counts", "qubits", "author", "authority", "monkey",
    "Monkey", "keyboard", "turkey", "hockey", "whiskey", "donkey", "tokenizer", "secretary",
    "key_count", "keyCount", "tokens_left", "max_tokens", "token_count", "token_type",
    "password_length", "n_keys", "num_tokens", "name", "description", "url", "host", "status",
    "tOkEn_CoUnT", "ToKeNiZeR", "ToKeN_tYpE",
]  # fmt: skip


@pytest.mark.parametrize("key", CREDENTIAL_KEYS)
def test_credential_keys_are_hidden(key: str) -> None:
    assert names_a_credential(key)
    assert redact_sensitive({key: "s3cret-value"}) == {key: REDACTED}
    assert redact_sensitive({"a": [{key: 12345}]}) == {"a": [{key: REDACTED}]}


@pytest.mark.parametrize("key", ORDINARY_KEYS)
def test_ordinary_keys_are_kept(key: str) -> None:
    assert not names_a_credential(key)
    assert redact_sensitive({key: "cn-north"}) == {key: "cn-north"}
    assert redact_sensitive({key: 7}) == {key: 7}


@pytest.mark.parametrize("value", ["", None, 0, False, [], {}])
def test_falsy_values_are_kept_so_unset_stays_visible(value: Any) -> None:
    assert redact_sensitive({"password": value}) == {"password": value}


@pytest.mark.parametrize(
    "value", ["x", 1, 3.5, True, ["a", "b"], {"http": "http://proxy:3128"}, [["k", "v"]]]
)
def test_any_truthy_value_under_a_credential_key_is_hidden_whole(value: Any) -> None:
    assert redact_sensitive({"token": value}) == {"token": REDACTED}


def test_reference_rules() -> None:
    """The reference's own floor: a proxy dict goes whole; a credentials bundle is searched."""
    out = redact_sensitive(
        {
            "proxy": {"http": "http://h:3128", "https": "https://h:3128"},
            "credentials": {"access_key": "AKIA123", "region": "cn", "secret_key": "s"},
            "client_credentials": "c",
        }
    )
    assert out["proxy"] == REDACTED
    assert out["credentials"] == {"access_key": REDACTED, "region": "cn", "secret_key": REDACTED}
    assert out["client_credentials"] == REDACTED
    bundle = redact_sensitive({"credentials": ["AKIA1", ("s3", ""), {"region": "cn"}]})
    assert bundle == {"credentials": [REDACTED, (REDACTED, ""), {"region": "cn"}]}


def test_headers_nested_and_as_pairs() -> None:
    value = {
        "headers": {"Authorization": "Bearer abc.def", "Accept": "application/json"},
        "header_list": [["Authorization", "Bearer abc"], ["Accept", "text/plain"]],
        "tuples": (("X-Api-Key", "k"), ("Host", "h")),
        "cookies": {"session": "abc"},
    }
    out = redact_sensitive(value)
    assert out["headers"] == {"Authorization": REDACTED, "Accept": "application/json"}
    assert out["header_list"] == [["Authorization", REDACTED], ["Accept", "text/plain"]]
    assert out["tuples"] == (("X-Api-Key", REDACTED), ("Host", "h"))
    assert out["cookies"] == REDACTED
    assert value["headers"]["Authorization"] == "Bearer abc.def"  # the input is not modified


DENIED_YES = "(1045, \"Access denied for user 'root'@'h' (using password: YES)\")"
DENIED_NO = "Access denied for user 'ada'@'h' (using password: NO)"


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("https://user:pw@host/path", "https://user:***@host/path"),
        ("postgresql://u:pw@db/x", "postgresql://u:***@db/x"),
        ("postgresql+psycopg://u:p@ss:w@rd@host:5432/db", "postgresql+psycopg://u:***@host:5432/db"),
        ("postgresql://u:ab/cd@host/db", "postgresql://u:***@host/db"),
        ("failed: mysql://root:hunter2@10.0.0.1/x", "failed: mysql://root:***@10.0.0.1/x"),
        ("login alice:s3cret@host", "login alice:***@host"),
        ("Authorization: Bearer eyJ0eXAi.abc-def_123", "Authorization: ***"),
        ("authorization=Basic dXNlcjpwdw==", "authorization=***"),
        ("sent Bearer abcdef123456 upstream", "sent Bearer *** upstream"),
        ("QUARK_API_KEY=q-456 then", "QUARK_API_KEY=*** then"),
        ("export quark_api_key='q 456'", "export quark_api_key='***'"),
        ("token=abc&page=2", "token=***&page=2"),
        ("GET /x?password=hunter2&token=t1&page=2", "GET /x?password=***&token=***&page=2"),
        ('{"token": "abc", "shots": 10}', '{"token": "***", "shots": 10}'),
        ("password: hunter2", "password: ***"),
        ("apiKey=abc", "apiKey=***"),
        ("ｔｏｋｅｎ=abc", "ｔｏｋｅｎ=***"),
        ("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2ln", "jwt ***"),
        ("run --password hunter2 --verbose", "run --password *** --verbose"),
        ("cli --api-key=zz -v", "cli --api-key=*** -v"),
        ("Set-Cookie: session=abc; Path=/", "Set-Cookie: ***; Path=/"),
        ("redis://:hunter2@cache:6379/0", "redis://:***@cache:6379/0"),
        ("postgresql://u@h/db?sslpassword=x&sslmode=require", "postgresql://u@h/db?sslpassword=***&sslmode=require"),
        # Bearer / Basic credentials: up to the next whitespace or quote, whatever they hold
        ("sent Bearer abc!d$ef%gh(x)[y]<z> upstream", "sent Bearer *** upstream"),
        ("got 'Bearer a/b:c?d#e,f;g' back", "got 'Bearer ***' back"),
        ('"Bearer tok\\en"', '"Bearer ***"'),
        ("bearer s3cr", "bearer ***"),
        ("BEARER abcdefghij", "BEARER ***"),
        ("header Basic dXNlcjpwdw== then", "header Basic *** then"),
        ("header basic YWxhZGRpbjpvcGVuc2VzYW1l", "header basic ***"),
        ("Basic u$er:p@ss!", "Basic ***"),
        # MySQL/MariaDB say whether a password was sent, not which
        (DENIED_YES, DENIED_YES),
        (DENIED_NO, DENIED_NO),
        ("password: YES", "password: ***"),
        ("using password: hunter2", "using password: ***"),
    ],
)  # fmt: skip
def test_credentials_inside_text_are_masked(text: str, masked: str) -> None:
    assert mask_text(text) == masked
    assert redact_sensitive({"error_message": text}) == {"error_message": masked}
    assert redact_sensitive([text]) == [masked]


@pytest.mark.parametrize(
    "text",
    [
        "ordinary prose, nothing to hide.",
        "https://example.com/path?page=2&sort=asc",
        "https://host:8080/p?mail=a@b.c",
        "ssh://git@github.com/org/repo",
        "mail ada@example.com at 12:30",
        "region=cn-north chip=Baihua shots: 1000",
        "the job failed: timeout after 30s",
        "monkey=banana keyboard: qwerty",
        "max_tokens=100 key_count: 3",
        "run --verbose --region cn -n 5",
        "well-known values -5 and --",
        "basic usage: run it",
        "Basic Authentication failed",
        "the bearer of this note",
        "Bearer ***",
    ],
)
def test_text_without_credentials_is_kept(text: str) -> None:
    assert mask_text(text) == text


def test_redact_record_covers_payloads_error_and_shards() -> None:
    record = {
        "task_id": "uqt_1",
        "backend": "quark",
        "metadata": {"api_key": "k", "region": "cn"},
        "result": {"counts": {"00": 5}, "token": "t"},
        "error_message": "upstream said token=abc",
        "shards": [{"platform_task_id": "p", "error_message": "password=pw", "result": None}],
    }
    out = redact_record(record)
    assert out["metadata"] == {"api_key": REDACTED, "region": "cn"}
    assert out["result"] == {"counts": {"00": 5}, "token": REDACTED}
    assert out["error_message"] == f"upstream said token={MASK}"
    assert out["shards"][0]["error_message"] == f"password={MASK}"
    assert (out["task_id"], out["backend"]) == ("uqt_1", "quark")


# -- property: values holding no credential come back unchanged ----------------

# Letters and words that cannot spell a credential word (no "key", "token", "auth", ...).
SAFE_WORDS = [
    "region", "chip", "shots", "counts", "qubit", "layout", "depth", "mode", "alpha", "beta",
    "gamma", "ring", "cn", "north", "baihua", "run", "job", "value", "name", "path", "host",
    "port", "id", "time", "big", "small", "on", "off", "grid", "line", "note", "page",
]  # fmt: skip
SEPARATORS = ["_", "-", ".", " ", ""]

safe_word = st.sampled_from(SAFE_WORDS)
safe_key = st.builds(
    lambda words, sep, style: style(sep.join(words)),
    st.lists(safe_word, min_size=1, max_size=3),
    st.sampled_from(SEPARATORS),
    st.sampled_from([str, str.upper, str.title]),
)
safe_text = st.builds(
    "".join,
    st.lists(
        st.one_of(
            safe_word,
            st.sampled_from([" ", ", ", ". ", "/", "=", ": ", "?", "&", "#", "(", ")"]),
            st.integers(0, 10**6).map(str),
        ),
        max_size=12,
    ),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    safe_text,
    st.text(alphabet=string.digits + " .,-", max_size=20),
)
json_like = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(safe_key, children, max_size=4)
    ),
    max_leaves=30,
)


@settings(max_examples=300, derandomize=True)
@given(json_like)
def test_values_without_credentials_are_never_changed(value: Any) -> None:
    assert redact_sensitive(value) == value


def test_what_is_too_deep_to_check_is_hidden() -> None:
    value: Any = {"token": "s3cret"}
    for _ in range(MAX_JSON_DEPTH):
        value = {"a": [value]}
    out = redact_sensitive(value)
    for _ in range(MAX_JSON_DEPTH // 2):
        out = out["a"][0]
    assert out == TOO_DEEP


secret_value = st.text(alphabet=string.ascii_letters + string.digits, min_size=6, max_size=20).map(
    lambda s: f"S3CR-{s}"
)
secret_text = st.builds(
    lambda template, secret: template.format(secret),
    st.sampled_from(
        [
            "https://ada:{}@host/x",
            "token={}&page=2",
            "QUARK_API_KEY={} then",
            "Authorization: Bearer {}",
            "password: {}",
            '{{"api_key": "{}"}}',
        ]
    ),
    secret_value,
)


@settings(max_examples=200, derandomize=True)
@given(
    json_like,
    st.sampled_from([*CREDENTIAL_KEYS, "credentials", "credentials", "creds"]),
    st.one_of(
        secret_value,
        st.lists(secret_value, min_size=1, max_size=3),
        st.lists(st.lists(secret_value, min_size=1), min_size=1, max_size=2),
    ),
    secret_text,
)
def test_credentials_never_survive_redaction(around: Any, key: str, secret: Any, text: str) -> None:
    value = {"outer": [around, {key: secret}], "message": text}
    assert "S3CR-" not in json.dumps(redact_sensitive(value), ensure_ascii=False)


@pytest.mark.parametrize(
    "text",
    [
        "a" * 100_000 + ":",
        "a.b-c" * 20_000 + "=",
        "a://b:" + "x@" * 50_000,
        "x:" * 50_000,
        "u:" + "p@" * 50_000,
        "--" + "x" * 100_000 + " y",
        "bearer " * 20_000,
    ],
    ids=["word", "dotted", "at-signs", "colons", "bare-at", "flag", "bearers"],
)
def test_masking_stays_linear_on_hostile_text(text: str) -> None:
    """Error messages and results may be large or crafted: no regex may backtrack badly."""
    started = time.perf_counter()
    mask_text(text)
    assert time.perf_counter() - started < 2.0


@pytest.mark.parametrize(
    ("user", "password", "sent"),
    [("root", "wr0ng-S3CR-pw", "YES"), ("uniqc_nobody_here", None, "NO")],
    ids=["wrong-password", "no-password"],
)
def test_mariadb_access_denied_keeps_whether_a_password_was_sent(
    user: str, password: str | None, sent: str
) -> None:
    """The driver's own message, through the store and through the command line: the
    password is hidden, ``(using password: YES)`` is not (it was masked as ``***"``)."""
    url = server_url("mysql").set(username=user, password=password)
    with pytest.raises(DatabaseUnavailableError) as caught:
        TaskStore(url=url)
    message = str(caught.value)
    assert f"(using password: {sent})" in message and "Access denied" in message, message
    assert "S3CR" not in message
    shown = subprocess.run(
        [sys.executable, "-m", "uniqc_store.cli", "list", "--url",
         url.render_as_string(hide_password=False)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert shown.returncode == 3 and f"(using password: {sent})" in shown.stderr, shown.stderr
    assert "S3CR" not in shown.stderr


def test_a_large_result_of_counts_is_redacted_quickly() -> None:
    """150,000 bitstring keys (a 4.4 MB result) are read in well under a second, not
    the 16 s a vocabulary search per key took: a key without a letter names nothing."""
    counts = {f"{i:020b}": i for i in range(150_000)}
    started = time.perf_counter()
    assert redact_sensitive({"counts": counts, "token": "t"}) == {
        "counts": counts,
        "token": REDACTED,
    }
    assert time.perf_counter() - started < 3.0


@given(st.text(alphabet=st.characters(whitelist_categories=("Nd", "Pc", "Pd", "Po", "Zs"))))
def test_a_key_without_a_letter_names_no_credential(key: str) -> None:
    assert not names_a_credential(key)
