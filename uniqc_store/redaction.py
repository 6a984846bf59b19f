"""Every rule that keeps a credential out of what the store shows.

Two questions, answered once here for the API, the command line and the
error messages:

- does a *key* name a credential (``api_key``, ``QUARK_API_KEY``, ``apiKey``,
  ``APIKEY``, ``x-api-key``, ``passWord``, fullwidth letters)? Keys are
  read after Unicode NFKC normalisation, split into words on every naming
  style, and checked word by word, pair by pair and as run-together
  compounds, so ``secretkey`` matches and ``monkey`` does not;
- does a *string* hold a credential (``https://user:pw@host``,
  ``Authorization: Bearer ...``, ``QUARK_API_KEY=...``, ``?token=...``)? Only
  the secret part is replaced, by ``***``.

:func:`redact_sensitive` applies both to a JSON-like value: a value under a
credential key becomes ``[REDACTED]`` (falsy values are kept, so "unset" stays
distinguishable from "set"), every other string is masked in place, and
nothing else changes.
"""

from __future__ import annotations

import functools
import itertools
import re
import unicodedata
from typing import Any

from uniqc_store.records import MAX_JSON_DEPTH

REDACTED = "[REDACTED]"
MASK = "***"
#: What stands for a part nested too deep to check (and to serialize).
TOO_DEEP = f"[REDACTED: nested more than {MAX_JSON_DEPTH} levels]"

#: Words (and known compounds) that name a credential wherever they appear in a key.
CREDENTIAL_WORDS = frozenset(
    {
        "token", "key", "secret", "password", "passwd", "pwd", "passphrase", "passcode",
        "credential", "cred", "auth", "authorization", "authentication", "oauth", "cookie",
        "jwt", "bearer", "dsn", "proxy", "signature", "apikey", "accesstoken", "secretkey",
        "privatekey", "sessionid", "databaseurl", "dburl", "connectionstring", "connstr",
    }
)  # fmt: skip
#: Credential words distinctive enough to count after any prefix (``githubtoken``).
_STRONG = frozenset(
    {
        "token", "secret", "password", "passwd", "passphrase", "passcode", "credential",
        "cookie", "jwt", "signature", "bearer", "authorization", "authentication", "apikey",
        "sessionid",
    }
)  # fmt: skip
#: Prefixes that turn a weak word into a credential (``apikey``, ``passkey``), not ``monkey``.
_MODIFIERS = frozenset(
    {
        "api", "access", "private", "client", "app", "master", "session", "signing", "sign",
        "encryption", "license", "ssh", "db", "user", "admin", "root", "refresh", "id", "bot",
        "service", "account", "basic", "digest", "http", "pass", "aws", "x",
    }
)  # fmt: skip
#: What may follow a strong word in a compound (``tokenvalue``, ``passwordhash``).
_TAILS = frozenset({"value", "hash", "id", "str", "string", "data", "header", "hex", "b64"})
#: Words that make a key *describe* a credential rather than hold one (``max_tokens``,
#: ``key_count``, ``token_type``): such keys are shown as they are.
_ABOUT = frozenset(
    {
        "count", "counts", "num", "number", "n", "total", "left", "remaining", "used", "len",
        "length", "size", "max", "min", "limit", "ttl", "expires", "expiry", "expiration",
        "type",
    }
)  # fmt: skip
#: Keys made only of these words hold a bundle of settings (``credentials: {region, ...}``):
#: a dict or list under them is searched, not hidden whole.
_CONTAINERS = frozenset({"credential", "cred"})

_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")
_CASELESS_WORD = re.compile(r"[^\W\d_]+|\d+")
#: A letter: every word of the vocabularies has one, so a key without any names nothing.
_LETTER = re.compile(r"[^\W\d_]")
#: ASCII without a letter ("0101", "42"): NFKC leaves it as it is, so it has no letter either.
_ASCII_WITHOUT_LETTERS = re.compile(r"[\x00-\x40\x5b-\x60\x7b-\x7f]*")


def _normalised(key: str) -> str:
    """``key`` after NFKC normalisation, without format characters (zero-width joiners
    and the like), so neither can split a word in two."""
    text = unicodedata.normalize("NFKC", key)
    return "".join(ch for ch in text if unicodedata.category(ch) != "Cf")


def key_words(key: str) -> list[str]:
    """The lower-case words of a key in any naming style, after NFKC normalisation."""
    return [word.lower() for word in _WORD.findall(_normalised(key))]


def _caseless_words(key: str) -> list[str]:
    """The words of a key split at separators only, case ignored: ``tOkEn`` is ``token``
    (split as camelCase it would be ``t``, ``ok``, ``en``)."""
    return _CASELESS_WORD.findall(_normalised(key).lower())


def _forms(word: str) -> tuple[str, ...]:
    """A word and its singular (``keys`` -> ``key``, ``proxies`` -> ``proxy``)."""
    if word.endswith("ies") and len(word) > 4:
        return word, word[:-1], word[:-3] + "y"
    if word.endswith("s") and len(word) > 3:
        return word, word[:-1]
    return (word,)


def _in(word: str, vocabulary: frozenset[str]) -> bool:
    return any(form in vocabulary for form in _forms(word))


_LONGEST = max(map(len, CREDENTIAL_WORDS)) + 3  # room for a plural ending


def is_credential_word(word: str) -> bool:
    """Whether one lower-case word is a credential word or a compound of one.

    Only cuts that leave a vocabulary-sized tail or head are tried, so a
    long word costs no more than a short one.
    """
    if _in(word, CREDENTIAL_WORDS):
        return True
    for cut in range(max(1, len(word) - _LONGEST), len(word)):
        head, tail = word[:cut], word[cut:]
        if _in(tail, CREDENTIAL_WORDS) and (
            head in CREDENTIAL_WORDS or head in _MODIFIERS or _in(tail, _STRONG)
        ):
            return True
    for cut in range(1, min(len(word), _LONGEST)):
        head, tail = word[:cut], word[cut:]
        if head in _STRONG and (_in(tail, CREDENTIAL_WORDS) or tail in _TAILS):
            return True
    return False


@functools.lru_cache(maxsize=4096)
def classify_key(key: str) -> str | None:
    """``"secret"``, ``"container"`` (credentials bundle) or None for an ordinary key.

    A key that is one word is first compared whole, case ignored (``ToKeN``,
    which a naming-style split would cut into ``To``, ``Ke``, ``N``). Then the key
    is read twice, split by naming style (``apiKey``) and split at separators with
    case ignored (``tOkEn_value``); a key that describes a credential in either
    reading (``tokenCount``) is ordinary, else the stronger verdict wins.
    """
    # "0101", "42": a result's counts, 150,000 of them at once; no word of ours in them
    if _ASCII_WITHOUT_LETTERS.fullmatch(key):
        return None
    whole = _normalised(key).lower()
    if not _LETTER.search(whole):
        return None
    if whole.isalpha() and is_credential_word(whole):
        return "container" if _in(whole, _CONTAINERS) else "secret"
    splits = (key_words(key), _caseless_words(key))
    if any(word in _ABOUT for words in splits for word in words):
        return None
    verdicts = {_classify_words(words) for words in splits}
    for verdict in ("secret", "container"):
        if verdict in verdicts:
            return verdict
    return None


def _classify_words(words: list[str]) -> str | None:
    found = [w for w in words if is_credential_word(w)]
    if found and all(_in(w, _CONTAINERS) for w in found):
        return "container"
    pairs = (a + b for a, b in itertools.pairwise(words))
    if found or any(is_credential_word(pair) for pair in pairs):
        return "secret"
    return None


def names_a_credential(key: str) -> bool:
    """Whether ``key`` names a credential (``api_key``, ``apiKey``, ``APIKEY``, ``passWord``)."""
    return classify_key(key) is not None


# -- credentials inside text ------------------------------------------------

# a user-info password ends at the last "@" before the path: it may hold ":" and "@"
_URL_USERINFO = re.compile(
    r"(?P<head>(?<![\w+.\-])[A-Za-z][\w+.\-]*://[^\s:/?#@]*):(?P<secret>[^\s/?#]*)@(?=[^\s@/?#]*(?:[/?#\s]|$))"
)
# a password holding "/", "?" or "#" too: up to the run's last "@" (a port is not a password)
_URL_USERINFO_SLASH = re.compile(
    r"(?P<head>(?<![\w+.\-])[A-Za-z][\w+.\-]*://[^\s:/?#@]*):(?!\d*(?:[/?#\s]|$)|\*\*\*@)"
    r"(?P<secret>\S*)@(?=[^\s@]*(?:\s|$))"
)
# no scheme: ``alice:s3cret@host``
_BARE_USERINFO = re.compile(
    r"(?<![\w/:.@%+\-])(?P<head>[\w.%+\-]+):(?P<secret>[^\s/?#@]+(?:@[^\s/?#@]+)*)@(?=[\w\[])"
)
# ``Bearer`` / ``Basic`` credentials: up to the next whitespace or quote, whatever they hold
_SCHEME_CREDENTIAL = re.compile(
    r"(?i)(?P<head>(?<![\w\-])(?P<scheme>bearer|basic)[ \t]+)(?P<secret>[^\s\"'`]+)"
)
# MySQL/MariaDB's "Access denied ... (using password: YES)": whether one was sent, not it
_USING_PASSWORD = re.compile(r"(?<=\(using )password: (?:YES|NO)(?=\))")
_JWT = re.compile(r"\beyJ[\w\-]{5,}\.eyJ[\w\-]{5,}\.[\w\-]*")
# ``KEY=value``, ``key: value``, ``"token": "..."``, ``?password=...&``: the key, then its value
_KEY_SEP = re.compile(
    r"(?<![\w.\-])(?P<q>[\"']?)(?P<key>(?:--?)?[^\W\d][\w.\-]*)(?P=q)[ \t]*[=:][ \t]*"
)
# a command-line flag and its value: ``--password hunter2``
_FLAG = re.compile(r"(?<![\w.\-])(?P<key>--?[^\W\d][\w\-]*)[ \t]+(?=[^\s\-])")
_VALUE = re.compile(
    r"(?:(?:bearer|basic|digest|token)[ \t]+)?(?:\"[^\"]*\"|'[^']*'|[^\s&,;\"'}\]]+)",
    re.IGNORECASE,
)
_MAYBE = re.compile(r"[:=@]|bearer|basic|eyJ|(?<![\w.\-])-", re.IGNORECASE)


def _mask_userinfo(match: re.Match[str]) -> str:
    return f"{match['head']}:{MASK}@"


def _looks_like_a_credential(scheme: str, value: str) -> bool:
    """Whether the word after ``Bearer`` / ``Basic`` is a credential rather than prose.

    Any value with a digit, a symbol or an inner capital is one (``dXNlcjpwdw==``,
    ``abc!def``); so is a bearer value of 8 letters or more. ``basic usage:``,
    ``Basic Authentication`` and ``the bearer of`` are prose (punctuation that
    ends a sentence does not count).
    """
    word = value.rstrip(".,:;!?)")
    if value == MASK or not word:
        return False
    if not word.isalpha() or not word[1:].islower():
        return True
    return scheme.lower() == "bearer" and len(word) >= 8


def _mask_scheme_credential(match: re.Match[str]) -> str:
    if not _looks_like_a_credential(match["scheme"], match["secret"]):
        return match[0]
    return f"{match['head']}{MASK}"


def _mask_pairs(text: str, keys: re.Pattern[str]) -> str:
    """Mask the value after every key that names a credential.

    Keys are found without consuming their values, so ``scheme://u@h/x?password=...``
    is not swallowed by the ``scheme:`` before it.
    """
    out: list[str] = []
    done = 0
    for key in keys.finditer(text):
        if key.start() < done or not names_a_credential(key["key"]):
            continue
        if _USING_PASSWORD.match(text, key.start()):
            continue
        value = _VALUE.match(text, key.end())
        if value is None or value[0].strip("\"'") == MASK:
            continue
        quote = value[0][0] if value[0][0] in "\"'" else ""
        out += [text[done : key.end()], quote, MASK, quote]
        done = value.end()
    out.append(text[done:])
    return "".join(out)


def mask_text(text: str) -> str:
    """``text`` with every credential it holds replaced by ``***``; other text is kept.

    Masks URL user-info passwords (with or without a scheme, holding ``:``
    or ``@``), ``Bearer`` / ``Basic`` credentials (up to the next whitespace or
    quote), JWTs, and the values of ``KEY=value`` /
    ``key: value`` pairs, query parameters and ``--flag value`` options whose
    key names a credential.
    """
    if not _MAYBE.search(text):
        return text
    text = _URL_USERINFO.sub(_mask_userinfo, text)
    text = _URL_USERINFO_SLASH.sub(_mask_userinfo, text)
    text = _BARE_USERINFO.sub(_mask_userinfo, text)
    text = _SCHEME_CREDENTIAL.sub(_mask_scheme_credential, text)
    text = _JWT.sub(MASK, text)
    return _mask_pairs(_mask_pairs(text, _KEY_SEP), _FLAG)


# -- JSON-like values ----------------------------------------------------------


def _is_header_pair(value: list[Any] | tuple[Any, ...]) -> bool:
    """``["Authorization", "Bearer ..."]``: a name that names a credential, then its value."""
    return len(value) == 2 and isinstance(value[0], str) and names_a_credential(value[0])


def _under_key(key: Any, value: Any, depth: int) -> Any:
    kind = classify_key(key) if isinstance(key, str) else None
    if kind is None or not value:
        return _redact(value, depth)
    if kind == "container" and isinstance(value, (dict, list, tuple)):
        return _in_bundle(value, depth)
    return REDACTED


def _in_bundle(value: Any, depth: int) -> Any:
    """Inside a credentials bundle: dicts are judged key by key, bare values are hidden.

    ``credentials: {"access_key": ..., "region": "cn"}`` keeps ``region``;
    ``credentials: ["AKIA...", "s3cret"]`` has no key to say a value is harmless.
    """
    if isinstance(value, dict) or depth >= MAX_JSON_DEPTH:
        return _redact(value, depth)
    if isinstance(value, (list, tuple)):
        items = [_in_bundle(v, depth + 1) for v in value]
        return items if isinstance(value, list) else tuple(items)
    return REDACTED if value else value


def redact_sensitive(value: Any) -> Any:
    """A copy of ``value`` with every credential hidden; the input is not modified.

    Under a key that names a credential a truthy value becomes ``[REDACTED]``
    whole (a ``proxy`` dict included), except that a dict or list under a
    credentials bundle (``credentials: {"access_key": ..., "region": ...}``)
    is searched key by key. Falsy values are kept. Header pairs
    ``[name, value]`` hide the value. Every other string goes through
    :func:`mask_text`; numbers, booleans and None are returned as they are.
    What lies deeper than :data:`~uniqc_store.records.MAX_JSON_DEPTH` levels
    (only rows another tool wrote can be) is not walked, so it cannot be
    checked: it becomes :data:`TOO_DEEP`.
    """
    return _redact(value, 0)


def _redact(value: Any, depth: int) -> Any:
    if isinstance(value, str):
        return mask_text(value)
    if not isinstance(value, (dict, list, tuple)):
        return value
    if depth >= MAX_JSON_DEPTH:
        return TOO_DEEP
    if isinstance(value, dict):
        return {k: _under_key(k, v, depth + 1) for k, v in value.items()}
    items = (
        [value[0], REDACTED]
        if _is_header_pair(value) and value[1]
        else [_redact(v, depth + 1) for v in value]
    )
    return items if isinstance(value, list) else tuple(items)


_PAYLOAD_FIELDS = ("metadata", "result")


def redact_record(record: dict[str, Any]) -> dict[str, Any]:
    """A task or shard dict (``to_dict()`` shape) with its payloads and error message redacted.

    Ids, statuses, backends and times are left alone: they are how a
    caller finds the record again.
    """
    out = dict(record)
    for field in _PAYLOAD_FIELDS:
        if field in out:
            out[field] = redact_sensitive(out[field])
    if isinstance(out.get("error_message"), str):
        out["error_message"] = mask_text(out["error_message"])
    if isinstance(out.get("shards"), list):
        out["shards"] = [redact_record(s) if isinstance(s, dict) else s for s in out["shards"]]
    return out
