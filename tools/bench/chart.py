"""The scale phase's log-log chart: time and peak memory against num_words, the notebook's recipe and the pipeline."""

from pathlib import Path
from typing import Any

# What each line plots: its label, where its time and its memory are in a scale row, and its style.
SERIES = [
    ("notebook's recipe", ("notebook", "seconds"), ("notebook", "peak_rss_mb"), "o-", "tab:red"),
    ("cold parallel run (all its processes)", ("parallel", "seconds"), ("parallel", "peak_pss_mb"), "s-", "tab:blue"),
    ("one train stage", ("train", "seconds"), ("train", "peak_rss_mb"), "^-", "tab:green"),
    ("encode stage", ("encode", "seconds"), ("encode", "peak_rss_mb"), "v-", "tab:gray"),
]


def _points(rows: list[dict[str, Any]], where: tuple[str, str]) -> tuple[list[int], list[float]]:
    """The num_words and values of the rows that have `where` (the notebook's stop where it ran out of memory)."""
    section, key = where
    kept = [row for row in rows if section in row and not row[section].get("out_of_memory")]
    return [row["num_words"] for row in kept], [row[section][key] for row in kept]


def draw_scale_chart(rows: list[dict[str, Any]], path: Path) -> None:
    """Two log-log panels, seconds and peak memory (GB) against num_words; an x where the notebook ran out of memory."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (time_axis, memory_axis) = plt.subplots(1, 2, figsize=(11, 4.2))
    for label, time_at, memory_at, style, colour in SERIES:
        widths, seconds = _points(rows, time_at)
        time_axis.plot(widths, seconds, style, color=colour, label=label)
        widths, megabytes = _points(rows, memory_at)
        memory_axis.plot(widths, [value / 1024 for value in megabytes], style, color=colour, label=label)
    for row in rows:
        # Where the notebook was stopped: its memory then, on the memory panel only (it never finished).
        if row.get("notebook", {}).get("out_of_memory"):
            stopped_at = (row["num_words"], row["notebook"]["peak_rss_mb"] / 1024)
            memory_axis.plot(*stopped_at, "x", color="tab:red", markersize=10)
            memory_axis.annotate(
                "notebook stopped:\nout of memory",
                stopped_at,
                textcoords="offset points",
                xytext=(10, -22),
                fontsize=8,
                color="tab:red",
            )
    for axis, label in ((time_axis, "wall time (s)"), (memory_axis, "peak memory (GB)")):
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("data.num_words")
        axis.set_ylabel(label)
        axis.grid(True, which="both", alpha=0.3)
    time_axis.legend(fontsize=8)
    time_axis.set_title("Time against num_words")
    memory_axis.set_title("Peak memory against num_words")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
