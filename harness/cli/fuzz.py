"""``greenfuzz fuzz``: draw programs, run them, judge them against the model."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path
from typing import Optional

from rich.console import Console
from rich.table import Table

from greenfuzz.harness.cli.common import (
    EXIT_FINDING,
    EXIT_OK,
    UsageError,
    add_impl_options,
    families_option,
    positive,
    prepare,
    shrink_seconds,
)
from greenfuzz.harness.cli.progress import campaign_progress
from greenfuzz.harness.execution import implementations
from greenfuzz.harness.execution.executor import IsolatedExecutor
from greenfuzz.harness.judging import memcheck
from greenfuzz.harness.model import rules
from greenfuzz.harness.program.ir import FAMILIES
from greenfuzz.harness.reporting import ci
from greenfuzz.harness.search.campaign import (
    DEFAULT_PROGRAMS_PER_CHILD,
    MEMORY_SHARE,
    MODEL_ERRORS_DIR,
    CampaignConfig,
    CampaignResult,
    run_campaign,
)
from greenfuzz.harness.search.coverage import rule_stats
from greenfuzz.harness.search.jobs import JobError, run_jobs, usable_cores

#: The environment variable that sets the default of ``--jobs`` (this repository's
#: tests set 1: pytest-xdist already spreads them over the cores).
JOBS_VARIABLE = "GREENFUZZ_JOBS"


def add_parser(sub: argparse._SubParsersAction) -> None:
    fuzz = sub.add_parser("fuzz", help="fuzz an implementation against the model")
    add_impl_options(fuzz)
    fuzz.add_argument("--budget", type=positive(float, "--budget"), default=60.0,
                      help="wall-clock seconds to fuzz for (default 60)")
    fuzz.add_argument("--max-examples", type=positive(int, "--max-examples"),
                      default=10**9, help="stop after this many programs drawn (run, or "
                                          "drawn again after passing: not run again; in "
                                          "all: with --jobs N each job its share)")
    fuzz.add_argument("--jobs", type=positive(int, "--jobs"), default=None, metavar="N",
                      help="fuzz in N processes side by side, each with its own worker and "
                           "a seed derived from --seed (job 0 uses --seed itself: its "
                           "programs are those of --jobs 1), sharing --out and its example "
                           "database; a failure several jobs find is saved once, and the "
                           "first confirmed finding stops them all (unless --keep-going). "
                           "--budget is wall-clock for the whole run. Default: the usable "
                           f"cores (${JOBS_VARIABLE} sets another default); 1 with "
                           "--in-process, which takes no other")
    fuzz.add_argument("--seed", type=int, default=None, help="seed for reproducible runs")
    fuzz.add_argument("--out", type=Path, default=Path("greenfuzz-findings"),
                      help="folder for findings (default ./greenfuzz-findings)")
    fuzz.add_argument("--keep-going", action="store_true",
                      help="continue after a finding, looking for different ones")
    fuzz.add_argument("--max-greenlets", type=positive(int, "--max-greenlets"), default=6,
                      help="most greenlets per program (default 6)")
    fuzz.add_argument("--families", type=families_option, default=FAMILIES,
                      help="comma-separated families of ops to draw programs from, or "
                           "--families=-name,... for all but those (default: all of "
                           f"{','.join(FAMILIES)}; core's switches are always drawn)")
    fuzz.add_argument("--programs-per-child", type=positive(int, "--programs-per-child"),
                      default=DEFAULT_PROGRAMS_PER_CHILD, metavar="N",
                      help="programs one forked child runs in turn (default "
                           f"{DEFAULT_PROGRAMS_PER_CHILD}; 1: a fresh child for every "
                           "program); a program that fails after others in the same child "
                           "is run again in a fresh one, and only that run counts")
    fuzz.add_argument("--no-verify", action="store_true",
                      help="do not run each finding's reproducer standalone to confirm it")
    fuzz.add_argument("--no-memory", action="store_true",
                      help="skip the raw-memory checks (repeating sampled programs, and "
                           "bytes per parked greenlet against --parked-budget)")
    fuzz.add_argument("--memory-share", type=positive(float, "--memory-share"),
                      default=MEMORY_SHARE,
                      metavar="FRACTION",
                      help="most of the run's time the raw-memory checks may take after the "
                           f"first one (default {MEMORY_SHARE:g})")
    fuzz.add_argument("--parked-budget", type=positive(float, "--parked-budget"),
                      default=memcheck.PARKED_BUDGET, metavar="BYTES",
                      help="most bytes a greenlet suspended at depth 0 may cost (default "
                           f"{memcheck.PARKED_BUDGET}: greenlet 3.5.6 takes about 6 KiB)")
    fuzz.add_argument("--strict", action="store_true",
                      help="exit 1 for unconfirmed findings too (those whose reproducer did "
                           "not do the same in a fresh process; by default they are kept "
                           "on disk and listed, and exit 0)")
    fuzz.add_argument("--quiet", action="store_true", help="no progress output")
    ci.add_ci_options(fuzz)
    fuzz.add_argument("--stats", type=Path, default=None, metavar="PATH",
                      help="write rule coverage as JSON: how often each rule of the model "
                           "fired, which never did, the rarest pairs of ops")


def run(args: argparse.Namespace, console: Console) -> int:
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot create output folder {args.out}: {e.strerror}") from None
    args.seed = ci.choose_seed(args.seed)
    args.jobs = _jobs(args)
    config, executor = prepare(
        args, out=args.out, budget=args.budget, max_examples=args.max_examples,
        seed=args.seed, keep_going=args.keep_going, max_greenlets=args.max_greenlets,
        families=args.families, memory=not (args.no_memory or args.arch),
        programs_per_child=args.programs_per_child,
        memory_share=args.memory_share, parked_budget=args.parked_budget,
        shrink_seconds=shrink_seconds(args.budget))
    if args.arch and not args.no_memory:
        # USS under qemu includes the emulator's own code cache, which grows as it
        # translates: a noise allowance from the host would call that a leak.
        console.print(f"note: raw-memory checks are skipped under --arch {args.arch}: "
                      "there they would measure qemu too (the liveness checks still run)")
    try:
        return _fuzz(args, console, config, executor)
    finally:
        if executor is not None:
            executor.close()


def _jobs(args: argparse.Namespace) -> int:
    """How many jobs: ``--jobs`` (or ``jobs`` in ``[tool.greenfuzz]``), else
    ``$GREENFUZZ_JOBS``, else the usable cores (1 in-process: there the programs run in
    this one process)."""
    if args.jobs is not None:
        if args.in_process and args.jobs > 1:
            raise UsageError("--in-process runs programs in this one process; it cannot be "
                             f"combined with --jobs {args.jobs}")
        return args.jobs
    if args.in_process:
        return 1
    text = os.environ.get(JOBS_VARIABLE, "").strip()
    if text:
        try:
            return positive(int, "--jobs")(text)
        except argparse.ArgumentTypeError as e:
            raise UsageError(f"{JOBS_VARIABLE} {e}") from None
    return usable_cores()


def _fuzz(args: argparse.Namespace, console: Console, config: CampaignConfig,
          executor: Optional[IsolatedExecutor]) -> int:
    impl = config.impl
    for name in impl.missing_optional:
        console.print(f"note: {impl.spec} has no {name}(); checks that need it are skipped")
    per = args.programs_per_child
    mode = ("in-process" if args.in_process else "isolated (a fresh child per program)"
            if per == 1 else f"isolated (a forked child per {per} programs; a failure is "
            "run again in a fresh one)")
    seed_value = getattr(args, "seed", None)
    # No more jobs than programs: each job runs its share of --max-examples.
    jobs = getattr(args, "jobs", 1)
    jobs = min(jobs, getattr(args, "max_examples", jobs))
    console.print(f"greenfuzz: fuzzing {impl.name} for {args.budget:g} s, seed {seed_value}, "
                  f"{mode}" + (f", {jobs} jobs" if jobs > 1 else ""))

    with campaign_progress(console, args.quiet) as progress:
        if jobs == 1:
            result = run_campaign(config, progress, executor)
        else:
            # The worker that checked the implementation is not needed: each job starts
            # its own.
            memory_limit = executor.memory_limit if executor is not None else None
            if executor is not None:
                executor.close()
            try:
                result = run_jobs(config, jobs, memory_limit, progress)
            except JobError as e:
                _summary(console, impl, e.result, config.out)
                raise
    _summary(console, impl, result, config.out)
    ci.write_ci_outputs(args, config, result)
    if getattr(args, "stats", None) is not None:
        try:
            args.stats.write_text(json.dumps(rule_stats(result), indent=1) + "\n")
        except OSError as e:
            console.print(f"greenfuzz: could not write --stats {args.stats}: {e.strerror}",
                          markup=False)
    if result.interrupted is not None:
        return 128 + result.interrupted
    failing = [f for f in result.findings if f.confirmed or args.strict]
    return EXIT_FINDING if failing else EXIT_OK


def _summary(console: Console, impl: implementations.Implementation,
             result: CampaignResult, out: Path) -> None:
    rate = result.examples / result.elapsed if result.elapsed else 0.0
    table = Table(title=f"greenfuzz on {impl.name}", show_header=False)
    table.add_row("programs run", str(result.examples))
    if result.per_job:
        table.add_row("jobs", f"{len(result.per_job)}, seeds " + ", ".join(
            str(job["seed"]) for job in result.per_job))
    table.add_row("time", f"{result.elapsed:.1f} s ({rate:.0f} programs/s)")
    if result.repeats:
        table.add_row("drawn again, not run", f"{result.repeats} programs (passed when "
                                              "run earlier in the run)")
    if result.overrun > 1.0 and result.interrupted is None:
        table.add_row("past the budget", f"{result.overrun:.1f} s, " + (
            "shrinking and verifying findings" if result.findings else
            "finishing the program running when it ran out"))
    unconfirmed = [f for f in result.findings if not f.confirmed]
    table.add_row("findings", str(len(result.findings) - len(unconfirmed)))
    if result.duplicates:
        table.add_row("failed like another job's finding",
                      f"{result.duplicates} programs (shrunk and saved by that job only)")
    if unconfirmed:
        table.add_row("unconfirmed", f"{len(unconfirmed)} (not reproduced in a fresh "
                                     "process; kept on disk)")
    if result.interrupted is not None:
        table.add_row("interrupted", f"by {signal.Signals(result.interrupted).name} after "
                                     f"{result.elapsed:.1f} s")
    if result.known:
        table.add_row("known differences (programs)", ", ".join(
            f"{name} {count}" for name, count in sorted(result.known.items())))
    if result.family_counts:
        table.add_row("families (programs)", ", ".join(
            f"{name} {count}" for name, count in result.family_counts.items()))
    if result.rules:
        never = [r for r in rules() if not result.rules[r]]
        table.add_row("model rules fired", f"{len(rules()) - len(never)} of {len(rules())}"
                      + (f"; never: {', '.join(never)}" if never else ""))
    if result.state_dependent:
        commonest = result.state_dependent_by.most_common(3)
        table.add_row("failed only after other programs", f"{result.state_dependent} (passed "
                      "in a fresh child; see the note): " + ", ".join(
                          f"{how} {count}" for how, count in commonest))
    if result.memory_checks:
        table.add_row("raw-memory checks", f"{result.memory_checks} "
                                           f"({result.memory_seconds:.1f} s)")
    if impl.missing_optional:
        table.add_row("skipped", ", ".join(f"checks needing {n}()" for n in
                                           impl.missing_optional))
    if result.refused:
        table.add_row("refused by the model", f"{result.refused} programs skipped (outcomes "
                                              "the model leaves out on purpose)")
    if result.model_errors:
        table.add_row("model errors", f"{result.model_errors} programs skipped (a greenfuzz "
                                      "bug: please report, with the programs below)")
    console.print(table)
    if result.model_errors:
        console.print(f"  programs the model failed on: {out / MODEL_ERRORS_DIR}", markup=False,
                      soft_wrap=True)
    for finding in result.findings:
        console.print(finding.report(), markup=False)
    for path in result.saved:
        console.print(f"  wrote {path}", markup=False)
    for note in result.notes:
        console.print(f"note: {note}", markup=False)
    for finding, why in result.unsaved:
        # Never lost: the whole finding goes to stderr when it cannot go to disk.
        print(json.dumps(finding.to_json()), file=sys.stderr)
        print(f"greenfuzz: error: could not write finding {finding.id}: {why}; its JSON "
              "is the line above on standard error", file=sys.stderr)
    if not result.findings:
        console.print("no findings")
