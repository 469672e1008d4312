"""The timeline plot of one recording: a row per day, activities coloured, non-wear grey."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from wearssl.data.preprocess import NS_PER_DAY, NS_PER_SECOND, split_days
from wearssl.predict.bouts import label_runs
from wearssl.predict.outputs import NON_WEAR

NON_WEAR_COLOUR = "#bdbdbd"


LABEL_COLOURS = {
    "sleep": "#3b4cc0",
    "sedentary": "#f6c141",
    "household": "#90c987",
    "light": "#90c987",
    "walking": "#e8601c",
    "moderate-vigorous": "#dc050c",
    "running": "#a5170e",
}


def label_colours(label_names: list[str]) -> list[str]:
    """A colour per class: a fixed one for common activity names, else a tab10 colour."""
    from matplotlib import colormaps

    palette = colormaps["tab10"].colors
    return [
        LABEL_COLOURS.get(name.lower(), palette[index % len(palette)])
        for index, name in enumerate(label_names)
    ]


def plot_timeline(
    path: str | Path,
    starts_ns: np.ndarray,
    labels: np.ndarray,
    label_names: list[str],
    window_seconds: int,
    title: str,
) -> None:
    """One row per day, 0-24 h across, a coloured band per activity run, non-wear grey."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    days = split_days(np.asarray(starts_ns))
    colours = label_colours(label_names)
    figure = Figure(figsize=(11, 1.2 + 0.55 * max(len(days), 1)), layout="constrained")
    axes = figure.add_subplot()
    window_ns = window_seconds * NS_PER_SECOND
    hours_per_ns = 24 / NS_PER_DAY
    for row, (_, part) in enumerate(days):
        midnight = (int(starts_ns[part.start]) // NS_PER_DAY) * NS_PER_DAY
        day_starts = starts_ns[part]
        for code, a, b in label_runs(labels[part], day_starts, window_ns):
            left = (int(day_starts[a]) - midnight) * hours_per_ns
            width = (b - a) * window_ns * hours_per_ns
            colour = NON_WEAR_COLOUR if code == NON_WEAR else colours[code]
            axes.broken_barh([(left, width)], (row - 0.4, 0.8), facecolors=colour, linewidth=0)
    axes.set_yticks(
        range(len(days)), [pd.Timestamp(day).strftime("%a %d %b %Y") for day, _ in days]
    )
    axes.set_ylim(len(days) - 0.5, -0.5)
    axes.set_xlim(0, 24)
    axes.set_xticks(range(0, 25, 3), [f"{h:02d}:00" for h in range(0, 25, 3)])
    axes.set_xlabel("time of day")
    axes.set_title(title)
    handles = [Patch(color=c, label=name) for name, c in zip(label_names, colours, strict=True)]
    handles.append(Patch(color=NON_WEAR_COLOUR, label="non-wear"))
    figure.legend(
        handles=handles, loc="outside lower center", ncols=min(len(handles), 7), frameon=False
    )
    figure.savefig(path, dpi=100)
