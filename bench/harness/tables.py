"""Figures as aligned text tables."""

from __future__ import annotations

from collections.abc import Sequence


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str) -> list[str]:
    """Lines of a table: ``align`` has ``l`` or ``r`` for each column.

    Each column is as wide as its widest cell; a rule follows the header.
    """
    if len(align) != len(header) or any(len(row) != len(header) for row in rows):
        raise ValueError("every row needs one cell per column, and align one letter each")
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        padded = (
            cell.rjust(width) if how == "r" else cell.ljust(width)
            for cell, width, how in zip(cells, widths, align, strict=True)
        )
        return "  ".join(padded).rstrip()

    head = line(header)
    return [head, "-" * len(head), *(line(row) for row in rows)]


def print_table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str) -> None:
    print()
    for text in format_table(header, rows, align):
        print(text)


def times(value: float | None) -> str:
    """A ratio as ``2.89x``, or ``-`` when there is none."""
    return "-" if value is None else f"{value:.2f}x"
