"""``decode_for_check``: checking a stored payload skips encoding its value again only
where that cannot fail, so the check's answer is the same as with the encoding."""

from __future__ import annotations

import json

import pytest

from uniqc_store.schema.payload import decode_for_check, encode_json

TEXTS = [
    '{"counts": {"00": 512, "11": 488}}',
    '[1.5, -2e-05, 3E+2, "NaN in a string", "Infinity"]',
    "NaN",
    "[-Infinity]",
    "1e308",
    "1.9e308",
    "1E+400",
    "9" * 250 + ".0",
    "9" * 210 + "e99",
    "9" * 400,
    '"\\ud800"',
    '"\\udc00 alone"',
    '"\\ud83d\\ude00 a pair"',
    '"\\\\ud800 an escaped backslash"',
    '"ünï 😀"',
    '"\ud800 raw"',
    '{"a": "\\u00e9"}',
]


def _encodes(text: str) -> bool:
    try:
        encode_json(json.loads(text), field="result", owner="task 't'")
    except (TypeError, ValueError):
        return False
    return True


def _sure(text: str) -> bool:
    return decode_for_check(text)[1]


@pytest.mark.parametrize("text", TEXTS)
def test_a_payload_said_to_encode_as_is_does_encode_and_decodes_the_same(text: str) -> None:
    value, sure = decode_for_check(text)
    if sure:
        assert _encodes(text)
    assert json.dumps(value) == json.dumps(json.loads(text))


def test_the_shortcut_is_taken_for_plain_payloads_and_refused_for_every_bad_one() -> None:
    taken = [t for t in TEXTS if _sure(t)]
    assert taken == [
        TEXTS[0], TEXTS[1], "1e308", "9" * 250 + ".0", "9" * 400, '"ünï 😀"', '{"a": "\\u00e9"}',
    ]  # fmt: skip
    assert [t for t in TEXTS if not _encodes(t)] == [
        "NaN", "[-Infinity]", "1.9e308", "1E+400", "9" * 210 + "e99",
        '"\\ud800"', '"\\udc00 alone"', '"\ud800 raw"',
    ]  # fmt: skip


class _Circular(list):  # type: ignore[type-arg]
    """A list holding itself."""


_LOOP = _Circular()
_LOOP.append(_LOOP)


@pytest.mark.parametrize(
    "value",
    [
        {"counts": {"00": 1, "11": 999}},
        {"é": "\u2028 ☃", "n": None, "f": 1.5, "b": True, "l": [1, [2, {}]]},
        {1: "int key", 2.5: "float key", False: "bool key", None: "none key"},
        [],
        "a bare string \u00e9",
        3,
        -0.0,
        None,
        {"x": float("nan")},
        {"x": float("inf")},
        {"x": object()},
        {(1, 2): "tuple key"},
        {"s": {1, 2}},
        _LOOP,
    ],
)
def test_strict_dumps_gives_what_json_dumps_gives(value: object) -> None:
    """``strict_dumps`` builds the C encoder itself: the same text, or the same error."""
    from uniqc_store.schema.payload import strict_dumps

    def outcome(dumps: object) -> tuple[str, str]:
        try:
            return "text", dumps(value)  # type: ignore[operator]
        except (TypeError, ValueError) as exc:
            return type(exc).__name__, str(exc)

    expected = outcome(lambda v: json.dumps(v, ensure_ascii=False, allow_nan=False))
    assert outcome(strict_dumps) == expected
