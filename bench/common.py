"""What the bench parts share: the repository on sys.path (bench's one edit of it), summaries of
several runs, Markdown tables, the machine a run was made on, `part_main` (a part's command line:
measure or --report, save results/PART.json, write the section), plots with a title that says what
is good, and `write_section`, the one function that writes RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # proxy, collapsed_forwarding and tests.support, from this checkout


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# what every child() script starts with: the repository on its sys.path, and its own RSS
CHILD_PRELUDE = """import sys
sys.path.insert(0, sys.argv[1])
def rss():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
"""


def child(script: str, *args: object) -> str:
    """The stdout of `script` run in a fresh interpreter, after CHILD_PRELUDE; its arguments from sys.argv[2]."""
    return subprocess.run([sys.executable, "-c", CHILD_PRELUDE + script, str(ROOT), *map(str, args)],
                          capture_output=True, text=True, check=True, cwd=ROOT).stdout


med = statistics.median


def rotated(names: list[str], turn: int) -> list[str]:
    """`names` in the order of this turn: who goes first moves on by one each turn."""
    k = turn % len(names)
    return names[k:] + names[:k]


def in_turns(names: list[str], turns: int, measure: Callable[[str, int], float]) -> dict[str, float]:
    """The mean of `measure(name, turn)` over `turns` turns of every name, who goes first moving on by one
    each turn: a shared machine's slow moments fall on every name alike, not on one whole pass."""
    spent = dict.fromkeys(names, 0.0)
    for turn in range(turns):
        for name in rotated(names, turn):
            spent[name] += measure(name, turn)
    return {name: total / turns for name, total in spent.items()}


def ratios(mine: Sequence[float], base: Sequence[float]) -> list[float]:
    """Run by run: each run of this project against the baseline's run of the same pair."""
    return [m / b for m, b in zip(mine, base, strict=True)]


def fmt(value: float, digits: int = 0) -> str:
    return "-" if math.isnan(value) else f"{value:,.{digits}f}"


def med_range(values: Sequence[float], digits: int = 0, scale: float = 1.0) -> str:
    """'median (min–max)' of several runs."""
    vals = sorted(v * scale for v in values)
    if not vals:
        return "-"
    middle = statistics.median(vals)
    if vals[0] == vals[-1] or math.isnan(middle):
        return fmt(middle, digits)
    return f"{fmt(middle, digits)} ({fmt(vals[0], digits)}–{fmt(vals[-1], digits)})"


def table(header: Sequence[str], rows: Iterable[Sequence[str]], align: Sequence[str] | None = None) -> str:
    align = align or ["l"] + ["r"] * (len(header) - 1)
    marks = {"l": "---", "r": "---:", "c": ":---:"}
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(marks[a] for a in align) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def goals_table(rows: Iterable[Sequence[str]]) -> str:
    """The goals a part checks, as (goal, measured, met?) rows."""
    return table(["goal", "measured (median of runs, min–max)", "met?"], rows, ["l", "l", "c"])


def verdict(values: Sequence[float], goal: float, below: bool = False) -> str:
    """Is the goal (at most `goal`, or under it) met on the median, and in every run?"""
    def met(value: float) -> bool:
        return value < goal if below else value <= goal

    return "**no**" if not met(med(values)) else "yes" if all(map(met, values)) else "on the median"


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    git = ["git", "-C", str(ROOT)]
    commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run([*git, "diff", "--name-only", "HEAD", "--", "*.py", ":!bench"], capture_output=True,
                           text=True).stdout.split()
    return {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "nproc": os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
            "implementation": platform.python_implementation(), "os": f"{platform.system()} {platform.release()}",
            "load_before": os.getloadavg(),
            "commit": (commit or "unknown") + (f" with uncommitted changes to {', '.join(dirty)}" if dirty else "")}


def section(title: str, r: dict[str, Any], intro: str, doc: str | None, *blocks: str) -> str:
    """A part's section: its title, a sentence on the run (the command, the machine, the commit, how long)
    and `intro`, the part's method (the second paragraph of its docstring, `doc`), then the blocks (tables...)."""
    m = r["machine"]
    load = f" (load average before it {m['load_before'][0]:.2f})" if m.get("load_before") else ""
    made_by = (f"Made by `{r['command']}` on {m['nproc']} cores ({m.get('cpu', 'unknown')}), CPython {m['python']}; "
               f"project commit {m['commit']}, {m['date']}; the run took {r['seconds']:.0f} s{load}.")
    method = (doc or "").split("\n\n")[1].strip()
    return "\n\n".join([f"## {title}", f"{made_by} {intro}".rstrip(), method, *blocks]) + "\n"


def load(out: Path, part: str) -> dict[str, Any]:
    return json.loads((out / "results" / f"{part}.json").read_text())  # type: ignore[no-any-return]


def write_section(out: Path, part: str, text: str) -> Path:
    """The one writer of RESULTS.md: puts `text` between the part's `<!-- PART:start -->` and
    `<!-- PART:end -->` markers (appended, with them, if absent), leaving the rest as it is."""
    path = out / "RESULTS.md"
    old = path.read_text() if path.exists() else "# Benchmarks\n"
    start, end = f"<!-- {part}:start -->", f"<!-- {part}:end -->"
    block = f"{start}\n{text.strip()}\n{end}"
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    new = pattern.sub(lambda _: block, old) if pattern.search(old) else f"{old.rstrip()}\n\n{block}\n"
    path.write_text(new)
    return path


def part_main(part: str, doc: str | None, argv: list[str] | None,
              measure: Callable[[argparse.Namespace], dict[str, Any]], render: Callable[[dict[str, Any], Path], str],
              *flags: tuple[str, dict[str, Any]]) -> int:
    """A part's command line, its description the first paragraph of `doc`: measure (or, with --report, load
    the saved figures), save, write the section. `flags`: the part's own, as (name, add_argument's keywords)."""
    parser = argparse.ArgumentParser(prog=f"bench/run.py {part}", description=(doc or "").split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smoke run, too short to quote, under bench/out/")
    parser.add_argument("--report", action="store_true",
                        help=f"measure nothing: redo the section and plots from results/{part}.json")
    parser.add_argument("--out", type=Path, help="where RESULTS.md, results/ and plots/ go (default: bench/, "
                                                 "or bench/out/ with --quick)")
    for name, options in flags:
        parser.add_argument(name, **options)
    args = parser.parse_args(argv)
    out = args.out or (BENCH / "out" if args.quick else BENCH)
    if args.report:
        r = load(out, part)
    else:
        info, started = machine(), time.perf_counter()
        r = measure(args)
        given = sys.argv[1:] if argv is None else argv
        r.update(machine=info, quick=args.quick, command=" ".join(["python3 bench/run.py", part, *given]),
                 seconds=time.perf_counter() - started)
        saved = out / "results" / f"{part}.json"
        saved.parent.mkdir(parents=True, exist_ok=True)
        saved.write_text(json.dumps(r, indent=1) + "\n")
        log(f"raw figures: {saved}")
    section = render(r, out / "plots")
    if r.get("quick"):
        section += "\n\n**A quick smoke run (`--quick`): too few and too short runs to quote.**"
    log(f"wrote the {part} section of {write_section(out, part, section)}")
    return 0


def pyplot() -> Any:
    """matplotlib's pyplot, headless; None (and said so) if it is not installed."""
    try:
        import matplotlib
    except ImportError:
        log("matplotlib is not installed: no plots")
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_plot(fig: Any, path: Path, title: str, subtitle: str) -> None:
    """A plot says at a glance what it shows (title) and what is good or why (subtitle, in grey)."""
    fig.suptitle(title, fontsize=12, y=0.99)
    fig.text(0.5, 0.925, subtitle, ha="center", va="top", fontsize=8.5, color="#555555", wrap=True)
    fig.tight_layout(rect=(0, 0, 1, 0.86))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    pyplot().close(fig)
