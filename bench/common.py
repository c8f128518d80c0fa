"""Small helpers shared by the benchmark parts: summaries and Markdown tables."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence


def summary(values: Sequence[float]) -> dict[str, float]:
    """Median, min and max, and the interquartile range, of several runs."""
    vals = sorted(values)
    if len(vals) >= 4:
        q1, _, q3 = statistics.quantiles(vals, n=4, method="inclusive")
    else:
        q1, q3 = vals[0], vals[-1]
    return {"median": statistics.median(vals), "min": vals[0], "max": vals[-1], "q1": q1, "q3": q3, "n": len(vals)}


def fmt(value: float, digits: int = 0) -> str:
    if math.isnan(value):
        return "-"
    return f"{value:,.{digits}f}"


def med_range(values: Sequence[float], digits: int = 0, scale: float = 1.0) -> str:
    """'median (min-max)' of several runs."""
    s = summary([v * scale for v in values])
    if s["min"] == s["max"] or math.isnan(s["median"]):
        return f"{fmt(s['median'], digits)}"
    return f"{fmt(s['median'], digits)} ({fmt(s['min'], digits)}–{fmt(s['max'], digits)})"


def table(header: Sequence[str], rows: Iterable[Sequence[str]], align: Sequence[str] | None = None) -> str:
    align = align or ["l"] + ["r"] * (len(header) - 1)
    marks = {"l": "---", "r": "---:", "c": ":---:"}
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(marks[a] for a in align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def splice_section(path: str, name: str, text: str) -> None:
    """Put `text` between the `<!-- name:start -->` and `<!-- name:end -->` markers of the
    file at `path` (appended, with them, if absent), leaving the rest of the file as it is."""
    import os

    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    old = open(path).read() if os.path.exists(path) else ""
    head, found, rest = old.partition(start)
    _, found_end, tail = rest.partition(end)
    if not (found and found_end):
        head, tail = old.rstrip() + "\n\n", "\n"
    with open(path, "w") as f:
        f.write(f"{head}{start}\n{text.strip()}\n{end}{tail}")


def marked_sections(path: str) -> str:
    """Every `<!-- name:start -->...<!-- name:end -->` section of the file, markers included,
    so that a part that rewrites the file whole keeps what the other parts wrote."""
    import re

    try:
        text = open(path).read()
    except OSError:
        return ""
    found = re.findall(r"<!-- (\w+):start -->.*?<!-- \1:end -->", text, flags=re.S)
    blocks = [re.search(rf"<!-- {name}:start -->.*?<!-- {name}:end -->", text, flags=re.S) for name in found]
    return "".join(f"\n{block.group(0)}\n" for block in blocks if block)
