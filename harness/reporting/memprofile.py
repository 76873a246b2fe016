"""``greenfuzz profile``: memory of parked greenlets, per implementation, as a report.

Every measurement runs in a fresh interpreter (the target's: ``--python``, or a cached
environment with ``--greenlet VERSION``), so that heaps do not carry over, and uses
``harness/target/rawmemory.py`` loaded by path (``harness/target/__main__.py parked``: the
target needs only the implementation).
Scenarios, for each target:

* ``count``: bytes against the number of parked greenlets (depth 0), fitted as bytes per
  greenlet plus a fixed cost (``rawmemory.measure_parked``);
* ``depth-python`` / ``depth-c``: bytes per greenlet suspended under ``d`` Python frames,
  or ``d`` levels that each pass through a C function (``list(map(f, ...))``);
* ``plain`` against ``single``: a hand-written script that parks ``N`` greenlets without
  any harness code, and ``measure_parked`` with the same ``N``; the report gives their
  ratio, which must stay within 10 % for the harness's numbers to be trusted.

The report folder holds ``profile.json`` (every measurement), ``summary.md``, PNG plots
and ``index.html`` showing them, one line per target.
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Sequence, Tuple

from greenfuzz.harness.envs import envs
from greenfuzz.harness.target import source_path
from greenfuzz.harness.target.memory import METRICS

#: Seconds one measurement (one fresh interpreter) may take.
MEASURE_TIMEOUT = 300.0
#: The plain script must agree with the harness within this fraction.
TOLERANCE = 0.10


class ProfileError(Exception):
    """Bad usage or a target that cannot run; one line."""


@dataclass(frozen=True)
class Target:
    label: str
    impl: str
    python: str


#: Runs a measurement in the target interpreter: ``harness/target/__main__.py parked JOB``
#: loads the target modules by path and prints ``rawmemory.measure_parked``'s fit.
HARNESS = (str(source_path("__main__")), "parked")

# Hand-written on purpose: no harness code, the way a user would measure (so it loads the
# implementation, trims the heap and reads memory its own way).  Job: impl, n, metric,
# and optionally depth and via ("python", or "c" through list(map(...))); prints the
# growth per parked greenlet.  bench/bench_memory.py compares it with HARNESS too.
PLAIN = ("-c", r"""
import ctypes, gc, importlib, importlib.util, json, os, sys

job = json.loads(sys.argv[1])
spec = job["impl"]
if spec.endswith(".py"):
    s = importlib.util.spec_from_file_location("impl", spec)
    impl = importlib.util.module_from_spec(s)
    s.loader.exec_module(impl)
else:
    impl = importlib.import_module(spec)
n, depth, via, metric = job["n"], job.get("depth", 0), job.get("via", "python"), job["metric"]
libc = ctypes.CDLL(None)
main = impl.getcurrent()
if metric == "uss":
    import psutil
    process = psutil.Process()

def memory():
    gc.collect()
    libc.malloc_trim(0)
    if metric == "uss":
        return process.memory_full_info().uss
    if metric == "anon" and os.path.exists("/proc/self/smaps_rollup"):
        total = 0
        with open("/proc/self/smaps_rollup") as f:
            for line in f:
                if line.startswith(("Anonymous:", "Swap:")):
                    total += int(line.split()[1]) * 1024
        return total
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

def f(k):
    if k:
        if via == "c":
            list(map(f, [k - 1]))
        else:
            f(k - 1)
    else:
        main.switch()

before = memory()
parked = []
for _ in range(n):
    g = impl.greenlet(f)
    g.switch(depth)
    parked.append(g)
g = None
after = memory()
for i in range(n):  # in creation order
    parked[i] = None
print(json.dumps({"delta": after - before, "per_greenlet": (after - before) / n}))
""")


def _run(python: str, script: Sequence[str], job: Dict[str, Any], timeout: float,
         prefix: Sequence[str] = ()) -> Dict[str, Any]:
    """Run ``script`` (``HARNESS`` or ``PLAIN``) with ``job`` in a fresh ``python``; its
    last stdout line as JSON, or an error."""
    cmd = [python, *prefix, *script, json.dumps(job)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              check=False, env=dict(os.environ, PYTHONHASHSEED="0"))
    except subprocess.TimeoutExpired:
        return {"error": f"no result within {timeout:g} s"}
    except OSError as e:
        return {"error": f"cannot run {python}: {e.strerror or e}"}
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["?"])[-1]
        return {"error": f"exit status {done.returncode}: {tail}"}
    try:
        return json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"error": f"unreadable output: {done.stdout[-200:]!r}"}


def _ints(text: str) -> Tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of integers: {text!r}"
                                         ) from None
    if not values or any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"need non-negative integers: {text!r}")
    return values


def add_parser(sub: Any, positive: Callable[[type, str], Callable[[str], Any]]
               ) -> argparse.ArgumentParser:
    """Register ``profile`` on the CLI's subparsers (``positive``: the CLI's checker of
    positive numbers, so that errors read the same everywhere)."""
    p = sub.add_parser("profile", help="measure memory per parked greenlet (by count and "
                                       "stack depth) for one or more implementations and "
                                       "write a report")
    p.add_argument("--impl", action="append", default=None, metavar="SPEC",
                   help="an implementation (module or .py path); repeat to compare")
    p.add_argument("--python", action="append", default=None, metavar="PATH",
                   help="interpreter(s) to run --impl under (and to base --greenlet "
                        "environments on; the first one); repeat to compare")
    p.add_argument("--greenlet", action="append", default=None, metavar="VERSION",
                   help="a greenlet release from the package index; repeat to compare")
    p.add_argument("--out", type=Path, default=Path("greenfuzz-profile"),
                   help="report folder (default ./greenfuzz-profile)")
    p.add_argument("--counts", type=_ints, default=(1000, 2000, 5000, 10000),
                   help="greenlet counts for the count scenario (default 1000,2000,5000,10000)")
    p.add_argument("--depths", type=_ints, default=(0, 10, 50, 100),
                   help="Python stack depths (default 0,10,50,100)")
    p.add_argument("--c-depths", type=_ints, default=(0, 5, 10, 20),
                   help="depths through C frames (default 0,5,10,20)")
    p.add_argument("--depth-count", type=positive(int, "--depth-count"), default=2000,
                   help="greenlets parked per depth point (default 2000)")
    p.add_argument("--metric", choices=METRICS, default="anon",
                   help="what to measure (default anon: anonymous memory, unaffected by "
                        "other processes)")
    p.add_argument("--timeout", type=positive(float, "--timeout"), default=MEASURE_TIMEOUT,
                   help="seconds per measurement (default 300)")
    p.add_argument("--memray", action="store_true",
                   help="also capture a memray profile of the largest count (needs memray "
                        "in the target interpreter)")
    return p


def targets(args: argparse.Namespace) -> List[Target]:
    """One target per --greenlet release and per (--impl, --python) pair."""
    pythons = [envs.find_interpreter(p) for p in (args.python or [])] or [sys.executable]
    out: List[Target] = []
    for version in args.greenlet or []:
        try:
            python = envs.greenlet_python(version, (args.python or [None])[0])
        except envs.EnvError as e:
            raise ProfileError(str(e)) from None
        out.append(Target(f"greenlet {version}", "greenlet", python))
    impls = args.impl or ([] if args.greenlet else ["greenlet"])
    for spec in impls:
        if spec.endswith(".py"):
            if not os.path.exists(spec):
                raise ProfileError(f"implementation file not found: {spec}")
            spec = os.path.abspath(spec)
        for python in pythons:
            label = os.path.basename(spec) if spec.endswith(".py") else spec
            if len(pythons) > 1:
                label += f" ({python})"
            out.append(Target(label, spec, python))
    return out


def jobs(target: Target, args: argparse.Namespace) -> List[Tuple[str, Dict[str, Any]]]:
    """(scenario, job) pairs for one target, smallest first."""
    base = {"impl": target.impl, "metric": args.metric}
    n = max(args.counts)
    out: List[Tuple[str, Dict[str, Any]]] = []
    out += [("depth-python", dict(base, counts=[args.depth_count], depth=d, via="python"))
            for d in args.depths]
    out += [("depth-c", dict(base, counts=[args.depth_count], depth=d, via="c"))
            for d in args.c_depths]
    out.append(("count", dict(base, counts=list(args.counts), depth=0, via="python")))
    out.append(("single", dict(base, counts=[n], depth=0, via="python")))
    out.append(("plain", {"impl": target.impl, "metric": args.metric, "n": n}))
    return out


def measure(targets_: Sequence[Target], args: argparse.Namespace,
            console: Any) -> List[Dict[str, Any]]:
    """Every measurement, with a progress bar."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    todo = [(t, scenario, job) for t in targets_ for scenario, job in jobs(t, args)]
    results: List[Dict[str, Any]] = []
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn(
            "{task.completed}/{task.total}"), TimeElapsedColumn(), console=console,
            transient=False) as progress:
        task = progress.add_task("profiling", total=len(todo))
        for target, scenario, job in todo:
            progress.update(task, description=f"{target.label}: {scenario}")
            code = PLAIN if scenario == "plain" else HARNESS
            start = time.monotonic()
            result = _run(target.python, code, job, args.timeout)
            results.append({"target": target.label, "impl": target.impl,
                            "python": target.python, "scenario": scenario,
                            "depth": job.get("depth", 0), "via": job.get("via", "python"),
                            "seconds": round(time.monotonic() - start, 3),
                            "job": job,
                            "result": result})
            progress.advance(task)
    return results


def _memray(targets_: Sequence[Target], args: argparse.Namespace) -> List[str]:
    """memray captures of the largest count scenario, or why there are none."""
    notes = []
    for target in targets_:
        check = subprocess.run([target.python, "-c", "import memray"], capture_output=True,
                               timeout=60, check=False)
        if check.returncode != 0:
            notes.append(f"{target.label}: memray is not installed for {target.python}; "
                         "no memray profile")
            continue
        out = args.out / f"memray-{_slug(target.label)}.bin"
        if out.exists():
            out.unlink()
        job = {"impl": target.impl, "metric": args.metric, "counts": [max(args.counts)],
               "depth": 0, "via": "python"}
        result = _run(target.python, HARNESS, job, args.timeout,
                      prefix=("-m", "memray", "run", "--quiet", "-o", str(out)))
        if "error" in result:
            notes.append(f"{target.label}: memray failed: {result['error']}")
            continue
        flame = out.with_suffix(".html")
        try:
            made = subprocess.run([target.python, "-m", "memray", "flamegraph", "--force",
                                   "-o", str(flame), str(out)], capture_output=True,
                                  timeout=args.timeout, check=False).returncode == 0
        except (subprocess.TimeoutExpired, OSError):
            made = False
        notes.append(f"{target.label}: memray profile of {max(args.counts)} parked "
                     f"greenlets: {out.name}" + (f", flame graph {flame.name}" if made else ""))
    return notes


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in ".-" else "_" for c in text).strip("_")


# -- the report ------------------------------------------------------------------------


def summarise(results: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """One row per target: the numbers of the summary table."""
    rows: Dict[str, Dict[str, Any]] = {}
    for r in results:
        row = rows.setdefault(r["target"], {"target": r["target"], "python_depths": {},
                                            "c_depths": {}, "errors": []})
        res = r["result"]
        if "error" in res:
            row["errors"].append(f"{r['scenario']}: {res['error']}")
            continue
        if res.get("impl_version"):
            row["version"] = res["impl_version"]
            row["python_version"] = res.get("python_version")
        if r["scenario"] == "count":
            row["per_greenlet"] = res["slope"]
            row["fixed"] = res["intercept"]
            row["metric"] = res["metric"]
        elif r["scenario"] == "depth-python":
            row["python_depths"][r["depth"]] = res["slope"]
        elif r["scenario"] == "depth-c":
            row["c_depths"][r["depth"]] = res["slope"]
        elif r["scenario"] == "single":
            row["single"] = res["per_greenlet"][0]
        elif r["scenario"] == "plain":
            row["plain"] = res["per_greenlet"]
    for row in rows.values():
        if row.get("single") and row.get("plain"):
            row["ratio"] = row["single"] / row["plain"]
            row["agrees"] = abs(row["ratio"] - 1.0) <= TOLERANCE
    return list(rows.values())


def markdown(rows: Sequence[Dict[str, Any]], args: argparse.Namespace,
             notes: Sequence[str]) -> str:
    depths = sorted({d for r in rows for d in r["python_depths"]})
    cdepths = sorted({d for r in rows for d in r["c_depths"]})
    head = (["implementation", "version", "B/greenlet", "fixed KiB"]
            + [f"py depth {d}" for d in depths] + [f"C depth {d}" for d in cdepths]
            + [f"plain script (N={max(args.counts)})", "harness, same N", "ratio"])
    lines = ["# greenfuzz profile: memory per parked greenlet", "",
             f"Metric: {args.metric} after gc.collect() and malloc_trim(0); bytes per "
             "greenlet are least-squares slopes over the counts "
             f"{', '.join(map(str, args.counts))} (depth points: "
             f"{args.depth_count} greenlets each). The plain script parks N greenlets "
             "without any harness code in a fresh interpreter; the harness column is "
             f"measure_parked with the same N; they must agree within {TOLERANCE:.0%}.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def num(v: Any) -> str:
        return f"{v:,.0f}" if isinstance(v, (int, float)) else "-"

    for r in rows:
        cells = [r["target"], f"{r.get('version', '-')} ({r.get('python_version', '?')})",
                 num(r.get("per_greenlet")),
                 num(r["fixed"] / 1024) if "fixed" in r else "-"]
        cells += [num(r["python_depths"].get(d)) for d in depths]
        cells += [num(r["c_depths"].get(d)) for d in cdepths]
        ratio = r.get("ratio")
        cells += [num(r.get("plain")), num(r.get("single")),
                  "-" if ratio is None else f"{ratio:.3f} "
                  + ("(agrees)" if r.get("agrees") else "(DISAGREES)")]
        lines.append("| " + " | ".join(cells) + " |")
    for r in rows:
        for error in r["errors"]:
            lines.append(f"\n{r['target']}: {error}")
    for note in notes:
        lines.append(f"\nnote: {note}")
    return "\n".join(lines) + "\n"


def plots(results: Sequence[Dict[str, Any]], out: Path) -> List[Path]:
    """count.png and depth.png, one line per target; none without matplotlib (the
    ``plots`` extra: a lean install leaves it out)."""
    try:
        import matplotlib
    except ImportError:
        return []

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(dict.fromkeys(r["target"] for r in results))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label in labels:
        for r in results:
            res = r["result"]
            if r["target"] == label and r["scenario"] == "count" and "error" not in res:
                ax.plot(res["counts"], [d / 2**20 for d in res["deltas"]], marker="o",
                        label=f"{label}: {res['slope']:,.0f} B/greenlet")
    _axes(ax, "parked greenlets (depth 0)", "memory growth (MiB)",
          "Memory against greenlet count")
    count_png = _save(plt, fig, out / "count.png")

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for ax, scenario, title in ((axes[0], "depth-python", "Python frames"),
                                (axes[1], "depth-c", "levels through C")):
        for label in labels:
            points = sorted((r["depth"], r["result"]["slope"]) for r in results
                            if r["target"] == label and r["scenario"] == scenario
                            and "error" not in r["result"])
            if points:
                ax.plot([p[0] for p in points], [p[1] / 1024 for p in points], marker="o",
                        label=label)
        _axes(ax, "stack depth at the switch", "KiB per parked greenlet",
              f"Memory against stack depth: {title}")
    return [count_png, _save(plt, fig, out / "depth.png")]


def _axes(ax: Any, xlabel: str, ylabel: str, title: str) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)


def _save(plt: Any, fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def html_page(summary_md: str, pngs: Sequence[Path]) -> str:
    """A self-contained page: the summary table and the plots (embedded)."""
    rows = [line for line in summary_md.splitlines() if line.startswith("|")]
    table = ["<table>"]
    for i, line in enumerate(rows):
        if i == 1:
            continue
        tag = "th" if i == 0 else "td"
        cells = [c.strip() for c in line.strip("|").split("|")]
        table.append("<tr>" + "".join(f"<{tag}>{html.escape(c)}</{tag}>" for c in cells)
                     + "</tr>")
    table.append("</table>")
    text = [f"<p>{html.escape(line)}</p>" for line in summary_md.splitlines()
            if line and not line.startswith(("|", "#"))]
    images = [f'<p><img alt="{p.stem}" src="data:image/png;base64,'
              f'{base64.b64encode(p.read_bytes()).decode()}"></p>' for p in pngs]
    return ("<!doctype html><html><head><meta charset='utf-8'><title>greenfuzz profile"
            "</title><style>body{font-family:sans-serif;margin:2em}table{border-collapse:"
            "collapse}td,th{border:1px solid #999;padding:4px 8px;text-align:right}"
            "</style></head><body><h1>greenfuzz profile: memory per parked greenlet</h1>"
            + "".join(text) + "".join(table) + "".join(images) + "</body></html>\n")


def run(args: argparse.Namespace, console: Any) -> int:
    """The ``profile`` command: 0 when every target was measured and the plain script
    agrees with the harness, 1 otherwise (the report is written either way)."""
    try:
        chosen = targets(args)
    except envs.EnvError as e:
        raise ProfileError(str(e)) from None
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ProfileError(f"cannot create output folder {args.out}: {e.strerror}") from None
    console.print(f"greenfuzz profile: {len(chosen)} target(s): "
                  + ", ".join(t.label for t in chosen), markup=False)
    results = measure(chosen, args, console)
    notes = _memray(chosen, args) if args.memray else []
    rows = summarise(results)
    summary = markdown(rows, args, notes)
    (args.out / "profile.json").write_text(json.dumps(
        {"format": "greenfuzz-profile/1", "metric": args.metric,
         "targets": [t.__dict__ for t in chosen], "summary": rows,
         "measurements": results, "notes": notes}, indent=1) + "\n")
    (args.out / "summary.md").write_text(summary)
    pngs = plots(results, args.out)
    (args.out / "index.html").write_text(html_page(summary, pngs))
    console.print(summary, markup=False)
    console.print(f"wrote {args.out}/profile.json, summary.md, "
                  f"{''.join(p.name + ', ' for p in pngs)}index.html", markup=False)
    if not pngs:
        console.print("note: no charts (count.png, depth.png): matplotlib is not installed; "
                      "pip install 'greenfuzz[plots]' for them", markup=False)
    ok = all(not r["errors"] and r.get("agrees") for r in rows)
    return 0 if ok else 1
