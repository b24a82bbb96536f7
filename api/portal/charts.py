"""Bar charts as SVG geometry, drawn on the server: no script on the page, and the same figures
as the table beside each chart (which screen readers read instead)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

WIDTH = 720.0
HEIGHT = 180.0


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str
    """What the bar's tooltip says: its time and figure."""


@dataclass(frozen=True)
class BarChart:
    bars: list[Bar]
    highest: Decimal
    first: datetime | None
    last: datetime | None
    time_format: str = "%d %b %H:%M"
    width: float = WIDTH
    height: float = HEIGHT

    @classmethod
    def of(
        cls, points: list[tuple[datetime, Decimal]], shown: str = "{:f}", time_format: str = "%d %b %H:%M"
    ) -> BarChart:
        """One bar per point, in time order, scaled to the highest (negative figures: no bar)."""
        ordered = sorted(points)
        highest = max((value for _, value in ordered), default=Decimal(0))
        step = WIDTH / max(len(ordered), 1)
        gap = step * 0.15 if step >= 4 else 0.0
        bars = []
        for index, (at, value) in enumerate(ordered):
            height = float(value / highest) * HEIGHT if highest > 0 and value > 0 else 0.0
            label = f"{at.strftime(time_format)}: {shown.format(value)}"
            bars.append(Bar(index * step + gap / 2, HEIGHT - height, step - gap, height, label))
        first, last = (ordered[0][0], ordered[-1][0]) if ordered else (None, None)
        return cls(bars, highest, first, last, time_format)
