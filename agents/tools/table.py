"""Plain-text tables, the way kubectl prints them: left-aligned, three-space gutters.

Models and people read the same observation, and both already know kubectl's
layout; metrics and traces use it too so every tool's output looks alike.
"""

from __future__ import annotations

from collections.abc import Sequence


def render_table(
    headers: Sequence[str], rows: Sequence[Sequence[object]], *, no_headers: bool = False
) -> str:
    """Columns padded to their widest cell; the last column is not padded."""
    text_rows = [[_cell(c) for c in row] for row in rows]
    all_rows = text_rows if no_headers else [list(headers), *text_rows]
    if not all_rows:
        return ""
    widths = [max(len(r[i]) for r in all_rows if i < len(r)) for i in range(len(headers))]
    lines = []
    for row in all_rows:
        cells = [row[i].ljust(widths[i]) if i < len(row) - 1 else row[i] for i in range(len(row))]
        lines.append("   ".join(cells).rstrip())
    return "\n".join(lines) + "\n"


def _cell(value: object) -> str:
    if value is None or value == "":
        return "<none>"
    return str(value)
