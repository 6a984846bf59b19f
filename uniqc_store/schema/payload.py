"""Payload JSON: strict encoding with a depth bound, tolerant decoding.

``result_json`` and ``metadata_json`` hold strict JSON (no NaN/Infinity), at most
``MAX_JSON_DEPTH`` levels deep, without lone surrogates, so every engine and
every reader takes it. Broken text another tool stored reads as
``{"_invalid_json": "<the stored text>"}`` (``decode_json``) so nothing is hidden or lost.
"""

from __future__ import annotations

import json
import json.scanner
import math
import re
from typing import Any

from uniqc_store.records import MAX_JSON_DEPTH

INVALID_JSON_KEY = "_invalid_json"
_JSON_STRING = re.compile(r'"[^"\\]*+(?:\\.[^"\\]*+)*+"')
_INNERMOST = re.compile(r"\[[^\[\]{}]*+\]|\{[^\[\]{}]*+\}")


def _too_deep(field: str, owner: str) -> ValueError:
    return ValueError(
        f"{field} of {owner} is nested more than {MAX_JSON_DEPTH} levels deep; flatten it "
        "(the store keeps at most that, so that every reader can decode and serve it)"
    )


def check_depth(text: str, *, field: str, owner: str) -> None:
    """Refuse JSON text nested deeper than :data:`MAX_JSON_DEPTH`.

    Works on the encoded text at C speed: a document with few brackets is
    shallow enough by count alone; otherwise strings are dropped and each
    pass removes the innermost arrays and objects, one level per pass.
    """
    if text.count("[") + text.count("{") <= MAX_JSON_DEPTH:
        return
    rest = _JSON_STRING.sub("", text)
    for _ in range(MAX_JSON_DEPTH + 1):  # the last pass must find nothing left
        rest, removed = _INNERMOST.subn("", rest)
        if not removed:
            return
    raise _too_deep(field, owner)


#: ``json.dumps(value, ensure_ascii=False, allow_nan=False)``'s encoder, made once.
_STRICT = json.JSONEncoder(ensure_ascii=False, allow_nan=False)
_make_c_encoder: Any = json.encoder.c_make_encoder  # type: ignore[attr-defined]  # None without _json
_encode_text: Any = json.encoder.encode_basestring


def strict_dumps(value: Any) -> str:
    """What ``json.dumps(value, ensure_ascii=False, allow_nan=False)`` returns, and raises.

    ``dumps`` with options builds a ``JSONEncoder`` and its C encoder at every call
    (four Python frames); this builds only the C encoder, with the arguments
    ``JSONEncoder.iterencode`` gives it (a fresh ``markers`` dict, as
    ``check_circular`` asks, so threads never share one). Without the C
    accelerator (or for a bare string, which ``encode`` handles itself) it is
    the encoder's own ``encode``.
    """
    if _make_c_encoder is None or isinstance(value, str):
        return _STRICT.encode(value)
    encoder = _make_c_encoder(
        {}, _STRICT.default, _encode_text, None, ": ", ", ", False, False, False
    )
    return "".join(encoder(value, 0))


def encode_json(value: Any, *, field: str, owner: str) -> str:
    """Strict JSON (no NaN/Infinity), at most :data:`MAX_JSON_DEPTH` deep, for every engine.

    On every ``save()``: the checks' common cases (few brackets, ASCII) are
    asked here, before calling the functions that look further.
    """
    try:
        text = strict_dumps(value)
    except RecursionError:
        text = None  # far too deep to encode at all: refused below, outside the handler
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{field} of {owner} cannot be stored as JSON: {exc}") from None
    if text is None:
        raise _too_deep(field, owner)
    if text.count("[") + text.count("{") > MAX_JSON_DEPTH:
        check_depth(text, field=field, owner=owner)
    if not text.isascii():
        _check_encodable(text, f"{field} of {owner}")
    return text


class _NotFinite(Exception):
    """A number that decodes as NaN or an infinity (not a ValueError: not a JSON error)."""


def _refuse_constant(_name: str) -> float:
    raise _NotFinite


def _finite_float(literal: str) -> float:
    value = float(literal)
    if math.isinf(value):  # 1e400
        raise _NotFinite
    return value


#: ``_loads`` that refuses NaN, Infinity and floats too large, as encoding would.
_loads_finite = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite_float).decode
#: An escaped surrogate, lone or not (a pair is fine: telling them apart is encoding's job).
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def decode_for_check(text: str) -> tuple[Any, bool]:
    """The value of JSON text (``ValueError`` if it is not JSON), and whether
    ``encode_json`` is sure to accept it, so checking a stored payload need not
    encode it again to find out. What could fail that: a non-finite number (refused
    while decoding) or a lone surrogate (escaped, or in the text). False only means
    "maybe": encode to know (its error says what is wrong)."""
    try:
        value = _loads_finite(text)
    except _NotFinite:
        return _loads(text), False
    if "\\u" in text and _SURROGATE_ESCAPE.search(text) is not None:
        return value, False
    if text.isascii():
        return value, True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate in the text itself
        return value, False
    return value, True


def _check_encodable(text: str, field: str) -> None:
    """Refuse lone surrogates: no engine's driver can encode them as UTF-8."""
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(
            f"{field} holds a lone surrogate (not valid Unicode); it cannot be stored"
        ) from None


_decoder = json.JSONDecoder()
_loads = _decoder.decode
# The C scanner behind ``decode``, without its two whitespace regexes: it
# halves the cost of the small documents a listing decodes by the hundred.
_scan = json.scanner.make_scanner(_decoder)  # type: ignore[arg-type]  # typeshed expects a scanner


def decode_json(raw: str | None, empty: Any) -> Any:
    """Parse a stored JSON column; broken text reads as ``{"_invalid_json": raw}``.

    A BLOB (another tool's) is read as its UTF-8 text, undecodable bytes
    backslash-escaped, so it too decodes or reads as the marker.
    """
    if type(raw) is not str:
        if raw is None:
            return empty
        raw = as_text(raw)
    if not raw:
        return empty
    try:
        value, end = _scan(raw, 0)
        if end == len(raw):
            return value
    except (StopIteration, ValueError, RecursionError):
        pass  # whitespace around the document, or broken: the full decoder decides
    try:
        return _loads(raw)
    except (ValueError, RecursionError):  # RecursionError: nested too deep to decode
        return {INVALID_JSON_KEY: raw}


def as_text(value: Any) -> str:
    """A non-text value another tool stored in a text column, as text."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "backslashreplace")
    return str(value)
