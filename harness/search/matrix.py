"""The compatibility matrix: implementations x operation families, from real campaigns.

Each cell is a campaign with a fixed budget on one implementation drawing programs from
one family (``core`` alone, or ``core`` plus that family), with the implementation's
profile of documented differences unless told otherwise.  A cell is ``pass`` (no
finding in so many programs), ``finding`` (linked to each reproducer), ``known`` (only
documented differences, named with their sources) or ``skipped`` (the implementation
lacks the API the family needs, or is not available on this machine: the reason is
given).  The result is written as ``matrix.json``, ``matrix.md`` and ``matrix.html``.
"""

from __future__ import annotations

import html
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from greenfuzz.harness.envs import catalog, envs
from greenfuzz.harness.execution import implementations
from greenfuzz.harness.execution.executor import IsolatedExecutor
from greenfuzz.harness.judging import differences as profiles
from greenfuzz.harness.search.campaign import CampaignConfig, run_campaign

PASS, FINDING, KNOWN, SKIPPED = "pass", "finding", "known", "skipped"
#: Optional API a family cannot do without.
FAMILY_NEEDS: Dict[str, Tuple[str, ...]] = {"tracing": ("settrace", "gettrace")}


@dataclass
class Cell:
    status: str
    programs: int = 0
    seconds: float = 0.0
    findings: List[Tuple[str, str, str]] = field(default_factory=list)  # (id, kind, .py path)
    known: Dict[str, int] = field(default_factory=dict)
    reason: str = ""


@dataclass
class Row:
    name: str
    implementation: str = ""
    reason: str = ""  # why the whole row is skipped
    profile: Optional[profiles.Profile] = None
    cells: Dict[str, Cell] = field(default_factory=dict)


def run_matrix(names: Sequence[str], families: Sequence[str], *, out: Path, budget: float,
               seed: Optional[int] = 0, timeout: float = 2.0, use_profiles: bool = True,
               progress: Callable[[str, str, Optional[Cell]], None] = lambda *a: None
               ) -> List[Row]:
    rows = []
    for name in names:
        row = Row(name)
        rows.append(row)
        try:
            target = catalog.resolve(name)
        except (catalog.Unavailable, envs.EnvError, KeyError) as e:
            row.reason = str(e)
            progress(name, "", None)
            continue
        row.name = target.name
        try:
            executor = IsolatedExecutor(
                target.impl, python=target.python or sys.executable,
                timeout=timeout * target.slowdown,
                # Under emulation qemu's own mappings count against RLIMIT_AS.
                memory_limit=None if target.slowdown > 1 else 4 << 30)
            executor.start()
        except implementations.ImplementationError as e:
            row.reason = str(e)
            progress(name, "", None)
            continue
        try:
            impl = implementations.from_worker(target.impl, executor.info, target.python or "")
            row.implementation = impl.name
            if use_profiles and target.profile:
                try:
                    row.profile = profiles.load(target.profile)
                except profiles.ProfileError as e:
                    row.reason = str(e)
                    progress(name, "", None)
                    continue
            for family in families:
                progress(name, family, None)
                row.cells[family] = _cell(impl, target, family, executor, row.profile,
                                          out / target.name / family, budget, seed,
                                          timeout * target.slowdown)
                progress(name, family, row.cells[family])
        finally:
            executor.close()
    write(rows, families, out, budget)
    return rows


def _cell(impl: implementations.Implementation, target: catalog.Target, family: str,
          executor: IsolatedExecutor, profile: Optional[profiles.Profile], out: Path,
          budget: float, seed: Optional[int], timeout: float) -> Cell:
    missing = [n for n in FAMILY_NEEDS.get(family, ()) if not impl.has(n)]
    if missing:
        return Cell(SKIPPED, reason=f"no {', '.join(missing)}")
    out.mkdir(parents=True, exist_ok=True)
    config = CampaignConfig(impl=impl, out=out, python=target.python, budget=budget,
                            seed=seed, timeout=timeout, keep_going=True,
                            families=("core",) if family == "core" else ("core", family),
                            profile=profile,
                            # Under emulation raw memory includes qemu's own (arch.py).
                            memory=target.slowdown == 1)
    result = run_campaign(config, executor=executor)
    findings = [(f.id, f.kind, str(out / f"{f.id}.py")) for f in result.findings]
    status = FINDING if findings else KNOWN if result.known else PASS
    return Cell(status, result.examples, result.elapsed, findings, dict(result.known))


# -- output ----------------------------------------------------------------------------------


def _text(cell: Cell, base: Path, link: Callable[[str, str], str]) -> str:
    if cell.status == SKIPPED:
        return f"skipped ({cell.reason})"
    if cell.status == PASS:
        return f"pass ({cell.programs} programs)"
    parts = []
    if cell.findings:
        parts.append("finding: " + ", ".join(
            link(f"{kind} {fid}", os.path.relpath(path, base))
            for fid, kind, path in cell.findings))
    if cell.known:
        parts.append("known: " + ", ".join(f"{k} ({n} programs)"
                                           for k, n in sorted(cell.known.items())))
    return "; ".join(parts) + f" ({cell.programs} programs)"


def to_json(rows: Sequence[Row], families: Sequence[str], budget: float) -> Dict[str, object]:
    return {
        "format": "greenfuzz-matrix/1", "budget_per_cell": budget, "families": list(families),
        "rows": [{"name": r.name, "implementation": r.implementation, "skipped": r.reason,
                  "profile": r.profile.name if r.profile else None,
                  "cells": {f: vars(c) for f, c in r.cells.items()}} for r in rows],
    }


def _known_sources(rows: Sequence[Row]) -> List[Tuple[str, profiles.Difference]]:
    used = []
    for row in rows:
        seen = {k for c in row.cells.values() for k in c.known}
        if row.profile:
            used += [(row.name, d) for d in row.profile.differences if d.id in seen]
    return used


def markdown(rows: Sequence[Row], families: Sequence[str], base: Path, budget: float) -> str:
    lines = [f"Each cell: a campaign with a {budget:g} s budget (at least one batch of "
             "programs, counted in the cell) on that implementation, drawing programs from "
             "that family (`greenfuzz matrix`).", "",
             "| implementation | " + " | ".join(families) + " |",
             "|---|" + "---|" * len(families)]
    for row in rows:
        label = f"**{row.name}**" + (f"<br>{row.implementation}" if row.implementation else "")
        if row.reason:
            cells = [f"skipped: {row.reason}"] + [""] * (len(families) - 1)
        else:
            cells = [_text(row.cells[f], base, lambda t, h: f"[{t}]({h})") for f in families]
        lines.append(f"| {label} | " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    known = _known_sources(rows)
    if known:
        lines += ["", "Known differences (from `harness/judging/documented/`):", ""]
        lines += [f"- {name} `{d.id}`: {d.summary} Source: {d.source}" for name, d in known]
    return "\n".join(lines) + "\n"


def page(rows: Sequence[Row], families: Sequence[str], base: Path, budget: float) -> str:
    colours = {PASS: "#d9f2d9", FINDING: "#f8d0d0", KNOWN: "#fff2c2", SKIPPED: "#e6e6e6"}
    head = "".join(f"<th>{html.escape(f)}</th>" for f in families)
    body = []
    for row in rows:
        label = (f"<b>{html.escape(row.name)}</b><br>"
                 f"<small>{html.escape(row.implementation)}</small>")
        if row.reason:
            cells = (f'<td colspan="{len(families)}" style="background:{colours[SKIPPED]}">'
                     f"skipped: {html.escape(row.reason)}</td>")
        else:
            cells = "".join(
                f'<td style="background:{colours[row.cells[f].status]}">'
                + _text(row.cells[f], base, lambda t, h: f'<a href="{html.escape(h)}">'
                        f"{html.escape(t)}</a>") + "</td>" for f in families)
        body.append(f"<tr><td>{label}</td>{cells}</tr>")
    known = "".join(f"<li>{html.escape(n)} <code>{html.escape(d.id)}</code>: "
                    f"{html.escape(d.summary)} Source: {html.escape(d.source)}</li>"
                    for n, d in _known_sources(rows))
    return ("<!doctype html><meta charset=utf-8><title>greenfuzz compatibility matrix</title>"
            "<style>body{font-family:sans-serif}td,th{border:1px solid #999;padding:4px;"
            "vertical-align:top}table{border-collapse:collapse}</style>"
            "<h1>greenfuzz compatibility matrix</h1><p>Each cell: a campaign with a "
            f"{budget:g} s budget (at least one batch of programs, counted in the cell)."
            f"</p><table><tr><th>implementation</th>{head}</tr>{''.join(body)}</table>"
            + (f"<h2>Known differences</h2><ul>{known}</ul>" if known else "") + "\n")


def write(rows: Sequence[Row], families: Sequence[str], out: Path, budget: float) -> List[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "matrix.json", out / "matrix.md", out / "matrix.html"]
    paths[0].write_text(json.dumps(to_json(rows, families, budget), indent=1) + "\n")
    paths[1].write_text(markdown(rows, families, out, budget))
    paths[2].write_text(page(rows, families, out, budget))
    return paths

