"""Results a CI system reads: JUnit XML, SARIF, ``summary.json``, GitHub Actions output.

A CI job shows failing test cases (JUnit XML), code-scanning alerts (SARIF), a job summary
(``$GITHUB_STEP_SUMMARY``) and annotations (``::error`` lines) without reading greenfuzz's
own output; ``summary.json`` is the same run for scripts.  Everything here is built from
plain data (a run's counts and its findings), so ``greenfuzz fuzz`` and the pytest plugin
write the same files.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

from greenfuzz import __version__
from greenfuzz.harness.reporting.findings import Finding, atomic_write

FORMAT = "greenfuzz-summary/1"
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"


@dataclass
class RunSummary:
    """One run: what ran it, on what, how many programs of each family, what it found."""

    command: str
    implementation: str
    implementation_version: str = ""
    interpreter: Dict[str, str] = field(default_factory=dict)
    seed: Optional[int] = None
    programs: int = 0
    seconds: float = 0.0
    families: Dict[str, int] = field(default_factory=dict)
    known: Dict[str, int] = field(default_factory=dict)
    #: Each finding as ``findings.Finding.to_json`` has it, plus ``reproducer`` (a path).
    findings: List[Dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> Dict[str, Any]:
        return {"format": FORMAT, "greenfuzz": __version__, **vars(self)}

    def add(self, finding: Finding, reproducer: Optional[Path]) -> None:
        self.findings.append({**finding.to_json(), "reproducer": str(reproducer or "")})


def interpreter(python: Optional[str], version: str) -> Dict[str, str]:
    """The interpreter programs ran under (this one unless ``--python``)."""
    if python:
        return {"executable": python, "version": version}
    return {"executable": sys.executable,
            "version": f"{platform.python_implementation()} {platform.python_version()}"}


def choose_seed(seed: Optional[int]) -> int:
    """The run's seed: the one asked for, else a fresh one, so every run can be repeated."""
    return seed if seed is not None else random.SystemRandom().randrange(2**31)


# -- files ---------------------------------------------------------------------------------


def write_summary(summary: RunSummary, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "summary.json"
    atomic_write(path, json.dumps(summary.to_json(), indent=1) + "\n")
    return path


def _title(finding: Mapping[str, Any]) -> str:
    first = str(finding.get("summary", "")).splitlines()
    return f"[{finding['kind']}] {finding['id']}" + (f": {first[0]}" if first else "")


def junit_xml(summary: RunSummary) -> str:
    """One test suite; a passing case for the run, a failing case per finding."""
    suite = ET.Element("testsuite", name=f"greenfuzz {summary.command}",
                       tests=str(1 + len(summary.findings)),
                       failures=str(len(summary.findings)), errors="0", skipped="0",
                       time=f"{summary.seconds:.3f}")
    props = ET.SubElement(suite, "properties")
    for name, value in (("greenfuzz", __version__), ("seed", summary.seed),
                        ("implementation", summary.implementation),
                        ("interpreter", summary.interpreter.get("version", "")),
                        ("programs", summary.programs)):
        ET.SubElement(props, "property", name=name, value=str(value))
    ET.SubElement(suite, "testcase", classname=f"greenfuzz.{summary.command}",
                  name=f"{summary.implementation} agrees with the model",
                  time=f"{summary.seconds:.3f}")
    for finding in summary.findings:
        case = ET.SubElement(suite, "testcase", classname=f"greenfuzz.{summary.command}",
                             name=f"{finding['kind']} {finding['id']}", time="0")
        failure = ET.SubElement(case, "failure", message=_title(finding), type=finding["kind"])
        failure.text = (f"{finding.get('summary', '')}\n\nreproducer: {finding['reproducer']}\n"
                        f"seed: {summary.seed}\n")
    return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"


def _uri(path: str) -> str:
    """Relative to the current directory when inside it (code scanning places results
    by paths relative to the checkout), else as given."""
    relative = os.path.relpath(path)
    return Path(path if relative.startswith("..") else relative).as_posix()


def sarif(summary: RunSummary) -> Dict[str, Any]:
    """SARIF 2.1.0: a rule per finding kind, a result per finding at its reproducer."""
    kinds = sorted({f["kind"] for f in summary.findings})
    rules = [{"id": kind, "name": kind.replace(":", "-"),
              "shortDescription": {"text": f"greenfuzz finding of kind {kind}"}}
             for kind in kinds]
    results = [{"ruleId": f["kind"], "ruleIndex": kinds.index(f["kind"]), "level": "error",
                "message": {"text": _title(f)},
                "locations": [{"physicalLocation": {"artifactLocation": {
                    "uri": _uri(f["reproducer"] or summary.implementation)}}}],
                "partialFingerprints": {"greenfuzzFinding": f["id"]}}
               for f in summary.findings]
    return {"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": [{
        "tool": {"driver": {"name": "greenfuzz", "version": __version__,
                            "informationUri": "https://pypi.org/project/greenfuzz/",
                            "rules": rules}},
        "properties": {"seed": summary.seed, "implementation": summary.implementation},
        "results": results}]}


def markdown(summary: RunSummary) -> str:
    """The job summary: a line of counts, a table of families, a list of findings."""
    head = "finding" if len(summary.findings) == 1 else "findings"
    lines = [f"### greenfuzz {summary.command}: {summary.implementation} "
             f"{summary.implementation_version}".rstrip(), "",
             f"{len(summary.findings)} {head} in {summary.programs} programs "
             f"({summary.seconds:.0f} s, seed {summary.seed}, "
             f"{summary.interpreter.get('version', '')}, greenfuzz {__version__})", ""]
    if summary.families:
        lines += ["| family | programs |", "|---|---|"]
        lines += [f"| {name} | {count} |" for name, count in summary.families.items()]
        lines.append("")
    for finding in summary.findings:
        lines.append(f"- **{_title(finding)}** (reproducer `{finding['reproducer']}`)")
    return "\n".join(lines) + "\n"


def annotations(summary: RunSummary) -> List[str]:
    """GitHub Actions workflow commands: one ``::error`` line per finding."""

    def escape(text: str) -> str:
        return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")

    out = []
    for finding in summary.findings:
        where = f"file={_uri(finding['reproducer'])}," if finding["reproducer"] else ""
        out.append(f"::error {where}title=greenfuzz {escape(finding['kind'])}::"
                   f"{escape(_title(finding))}")
    return out


def github_actions(summary: RunSummary, environ: Mapping[str, str] = os.environ,
                   stream: Any = None) -> bool:
    """Under GitHub Actions (``GITHUB_ACTIONS=true``): append the Markdown summary to
    ``$GITHUB_STEP_SUMMARY`` and print the annotations; False elsewhere."""
    if environ.get("GITHUB_ACTIONS") != "true":
        return False
    where = environ.get("GITHUB_STEP_SUMMARY")
    if where:
        with open(where, "a") as f:
            f.write(markdown(summary))
    for line in annotations(summary):
        print(line, file=stream or sys.stdout, flush=True)
    return True


def write_all(summary: RunSummary, folder: Path, junit: Optional[Path] = None,
              sarif_path: Optional[Path] = None) -> List[Path]:
    """``summary.json`` in ``folder``, and JUnit XML and SARIF where asked; GitHub Actions
    output when running there.  Returns the files written."""
    written = [write_summary(summary, folder)]
    for path, text in ((junit, lambda: junit_xml(summary)),
                       (sarif_path, lambda: json.dumps(sarif(summary), indent=1) + "\n")):
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, text())
            written.append(path)
    github_actions(summary)
    return written


# -- the fuzz command's part ---------------------------------------------------------------


def add_ci_options(parser: argparse.ArgumentParser) -> None:
    """``--junit-xml`` and ``--sarif`` (``summary.json`` is always written to ``--out``)."""
    parser.add_argument("--junit-xml", type=Path, default=None, metavar="PATH",
                        help="write the run as JUnit XML: each finding a failing test case "
                             "with its summary and reproducer")
    parser.add_argument("--sarif", type=Path, default=None, metavar="PATH",
                        help="write the findings as SARIF 2.1.0 (code-scanning alerts)")


def write_ci_outputs(args: argparse.Namespace, config: Any, result: Any,
                     command: str = "fuzz") -> List[Path]:
    """After a campaign (``config``: its CampaignConfig, ``result``: its CampaignResult):
    ``summary.json`` in ``--out``, the files ``--junit-xml``/``--sarif`` ask for, and
    GitHub Actions output."""
    impl = config.impl
    summary = RunSummary(command, impl.spec, impl.version,
                         interpreter(getattr(config, "python", None), impl.python),
                         getattr(config, "seed", None),
                         result.examples, round(result.elapsed, 3),
                         dict(result.family_counts), dict(result.known))
    for finding in result.findings:
        script = config.out / f"{finding.id}.py"
        summary.add(finding, script if script.exists() else None)
    try:
        return write_all(summary, config.out, getattr(args, "junit_xml", None),
                         getattr(args, "sarif", None))
    except OSError as e:
        print(f"greenfuzz: error: could not write CI results: {e}", file=sys.stderr)
        return []


def merge(parts: Sequence[Mapping[str, Any]], base: RunSummary) -> RunSummary:
    """Several processes' summaries (pytest-xdist workers) as one."""
    for part in parts:
        base.programs += int(part.get("programs", 0))
        base.seconds = max(base.seconds, float(part.get("seconds", 0.0)))
        for key in ("families", "known"):
            mine = getattr(base, key)
            for name, count in dict(part.get(key, {})).items():
                mine[name] = mine.get(name, 0) + count
        seen = {f["id"] for f in base.findings}
        base.findings += [f for f in part.get("findings", []) if f["id"] not in seen]
        if base.seed is None:
            base.seed = part.get("seed")
    return base
