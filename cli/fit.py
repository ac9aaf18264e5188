"""A table that never cuts an identifier, whatever the terminal's width.

`Fitted(table)` draws the table when every cell's longest word fits its column at the
console's width (then a tag, version or image, which has no space in it, is drawn
whole); otherwise it draws one block per row, a `column: value` line per cell, where a
value has the whole width to itself. `sml history`, `diff` and `rollout list|show` print
through it, so at 80 columns their tags can still be copied into `diff` and `rollback --to`.
"""

from __future__ import annotations

from rich.console import Console, ConsoleOptions, Group, RenderResult
from rich.measure import Measurement
from rich.rule import Rule
from rich.table import Table
from rich.text import Text


class Fitted:
    """`table` as a table where it fits whole words, else as one block per row."""

    def __init__(self, table: Table) -> None:
        self.table = table

    def fits(self, console: Console, options: ConsoleOptions) -> bool:
        """True when the table's narrowest layout (each column as wide as its longest
        word) fits the width."""
        # Measurement.get would clamp to the width: ask the table itself
        return self.table.__rich_measure__(console, options).minimum <= options.max_width

    def blocks(self) -> Group:
        """Each row as `column: value` lines under a rule, the title first."""
        table = self.table
        parts: list[Text | Rule] = []
        if table.title:
            parts.append(Text(str(table.title), style="bold"))
        cells = [list(column.cells) for column in table.columns]
        for i, row in enumerate(table.rows):
            parts.append(Rule(style="dim"))
            for column, values in zip(table.columns, cells, strict=True):
                value = values[i]
                text = value.copy() if isinstance(value, Text) else Text(str(value))
                if not text.plain:
                    continue
                line = Text.assemble((f"{column.header}: ", "bold"), text)
                if row.style:
                    line.stylize(row.style)
                parts.append(line)
        return Group(*parts)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield self.table if self.fits(console, options) else self.blocks()

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement(1, options.max_width)
