"""Tables for ``uniqc-store list`` and ``stats`` that never cut a header or a value.

Left to itself, Rich squeezes a table that is wider than the terminal by folding
its columns and, as a last resort, by narrowing every column evenly: headers
became ``submi`` and ``back``/``end``, dates ``2026-``, and a long task id took
the whole width so that the other columns vanished. Here the widths are decided
before Rich sees the table: each column gets the narrowest width it may take
(a value kept whole: its widest value; a value that may wrap: a few characters,
never less than its header), the room left goes to the wrapping columns, and
when even the narrowest widths do not fit, every row is printed as a block of
``header  value`` lines instead. Those lines are never wrapped by us, only by the
terminal, so an id stays one piece of text to copy or to ``grep``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rich.cells import cell_len
from rich.console import Console, JustifyMethod
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text


@dataclass(frozen=True)
class Field:
    """One column. ``wraps_to`` is the narrowest width its values may be wrapped
    to (at spaces, else anywhere); None keeps every value whole on one line."""

    header: str
    wraps_to: int | None = None
    justify: JustifyMethod = "left"


def print_rows(
    console: Console,
    make_table: Callable[[], Table],
    fields: Sequence[Field],
    rows: Sequence[Sequence[str]],
    title: str | None = None,
) -> None:
    """Print ``rows`` as the table ``make_table`` styles, or stacked when it cannot fit."""
    widest = [
        max([cell_len(field.header), *(cell_len(row[i]) for row in rows)])
        for i, field in enumerate(fields)
    ]
    least = [
        most if field.wraps_to is None else min(most, max(cell_len(field.header), field.wraps_to))
        for most, field in zip(widest, fields, strict=True)
    ]
    room = console.width - _borders(console, make_table, len(fields)) - sum(least)
    if room < 0:
        _print_stacked(console, fields, rows, title)
        return
    widths = list(least)
    # the room left widens the wrapping columns, those closest to whole first, so
    # that as many as can be are shown unwrapped
    for i in sorted(range(len(fields)), key=lambda i: widest[i] - least[i]):
        extra = min(room, widest[i] - widths[i])
        widths[i] += extra
        room -= extra
    table = make_table()
    table.title = title
    for field, width in zip(fields, widths, strict=True):
        table.add_column(
            field.header,
            width=width,
            no_wrap=field.wraps_to is None,
            overflow="fold",
            justify=field.justify,
        )
    for row in rows:  # Text: a backend named "[red]" or ":x:" is shown as it is
        table.add_row(*(Text(value) for value in row))
    console.print(table)


def _borders(console: Console, make_table: Callable[[], Table], count: int) -> int:
    """The width the table's borders and padding take, beside its columns' contents."""
    table = make_table()
    for _ in range(count):
        table.add_column(width=1)
    wide = console.options.update_width(1_000_000)  # measured unsqueezed
    return Measurement.get(console, wide, table).maximum - count


def _print_stacked(
    console: Console, fields: Sequence[Field], rows: Sequence[Sequence[str]], title: str | None
) -> None:
    if title:
        console.print(Text(title))
    label = max(cell_len(field.header) for field in fields)
    for n, row in enumerate(rows):
        if n:
            console.print()
        for field, value in zip(fields, row, strict=True):
            padding = " " * (label - cell_len(field.header))
            console.print(Text(f"{field.header}{padding}  {value}"), soft_wrap=True)
