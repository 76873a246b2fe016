"""``greenfuzz``: the command line.

Exit status: 0 nothing found, 1 a finding (already on disk), 2 bad usage or bad input,
always with a one-line message and never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import List, NoReturn, Optional, Sequence, Tuple

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from harness import (
    arch,
    catalog,
    envs,
    implementations,
    memcheck,
    memprofile,
    profiles,
    scale,
)
from harness.campaign import (
    DEFAULT_PROGRAMS_PER_CHILD,
    CampaignConfig,
    CampaignResult,
    judge,
    run_campaign,
)
from harness.differential import Side, run_diff
from harness.executor import IsolatedExecutor
from harness.ir import FAMILIES, ProgramError
from harness.matrix import Cell, markdown, run_matrix

EXIT_OK, EXIT_FINDING, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad usage or bad input: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _positive(kind: type, what: str):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be a number, not {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{what} must be positive, not {text}")
        return value

    return parse


def _families(text: str) -> Tuple[str, ...]:
    """``a,b`` chooses families; ``-a,-b`` means all but those."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    off = [name[1:] for name in names if name.startswith("-")]
    if off and len(off) != len(names):
        raise argparse.ArgumentTypeError("--families either chooses families (a,b) or "
                                         "switches them off (-a,-b), not both")
    unknown = [name for name in (off or names) if name not in FAMILIES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown famil{'ies' if len(unknown) > 1 else 'y'} {', '.join(unknown)}; "
            f"choose from {','.join(FAMILIES)}" if names else
            f"--families needs at least one of {','.join(FAMILIES)}")
    return tuple(f for f in FAMILIES if (f not in off if off else f in names))


def _add_impl(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--impl", default="greenlet",
        help="implementation: an importable module name or a path to a .py file "
             "(default: greenlet)")
    parser.add_argument("--timeout", type=_positive(float, "--timeout"), default=2.0,
                        help="seconds one program may run before it counts as a hang")
    parser.add_argument("--python", default=None, metavar="PATH",
                        help="run the programs under this interpreter (it needs only the "
                             "implementation installed; generation, the model and "
                             "shrinking stay here)")
    parser.add_argument("--greenlet", default=None, metavar="VERSION",
                        help="run the programs on this greenlet release from the package "
                             "index, in a cached virtual environment of --python (see "
                             "'greenfuzz env')")
    parser.add_argument("--arch", default=None, choices=sorted(arch.CPUS), metavar="ARCH",
                        help="run the programs on another CPU under qemu user-mode "
                             f"emulation ({', '.join(arch.CPUS)}; see 'greenfuzz env "
                             "--arch'); --timeout is then multiplied by "
                             f"{arch.SLOWDOWN:g}")
    parser.add_argument("--known", default=None, metavar="NAME",
                        help="an implementation from 'greenfuzz impls' (sets --impl and "
                             "--python; its environment is made on first use)")
    parser.add_argument("--profile", default=None, metavar="NAME|PATH",
                        help="documented differences of the implementation (bundled: "
                             f"{', '.join(profiles.names())}, or a .json file): divergences "
                             "they explain are reported as known, not as findings")
    parser.add_argument("--in-process", action="store_true",
                        help="run programs in this process (faster; for trusted "
                             "implementations: a crash ends the harness)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="greenfuzz", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    fuzz = sub.add_parser("fuzz", help="fuzz an implementation against the model")
    _add_impl(fuzz)
    fuzz.add_argument("--budget", type=_positive(float, "--budget"), default=60.0,
                      help="wall-clock seconds to fuzz for (default 60)")
    fuzz.add_argument("--max-examples", type=_positive(int, "--max-examples"),
                      default=10**9, help="stop after this many programs")
    fuzz.add_argument("--seed", type=int, default=None, help="seed for reproducible runs")
    fuzz.add_argument("--out", type=Path, default=Path("greenfuzz-findings"),
                      help="folder for findings (default ./greenfuzz-findings)")
    fuzz.add_argument("--keep-going", action="store_true",
                      help="continue after a finding, looking for different ones")
    fuzz.add_argument("--max-greenlets", type=_positive(int, "--max-greenlets"), default=6,
                      help="most greenlets per program (default 6)")
    fuzz.add_argument("--families", type=_families, default=FAMILIES,
                      help="comma-separated families of ops to draw programs from, or "
                           "--families=-name,... for all but those (default: all of "
                           f"{','.join(FAMILIES)}; core's switches are always drawn)")
    fuzz.add_argument("--programs-per-child", type=_positive(int, "--programs-per-child"),
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
    fuzz.add_argument("--memory-share", type=_positive(float, "--memory-share"), default=0.2,
                      metavar="FRACTION",
                      help="most of the run's time the raw-memory checks may take after the "
                           "first one (default 0.2)")
    fuzz.add_argument("--parked-budget", type=_positive(float, "--parked-budget"),
                      default=memcheck.PARKED_BUDGET, metavar="BYTES",
                      help="most bytes a greenlet suspended at depth 0 may cost (default "
                           f"{memcheck.PARKED_BUDGET}: greenlet 3.5.6 takes about 6 KiB)")
    fuzz.add_argument("--quiet", action="store_true", help="no progress output")

    replay = sub.add_parser("replay", help="run a saved program again: exit 1 if it "
                                           "still fails")
    replay.add_argument("file", type=Path, help="a finding's .json (or a program .json)")
    _add_impl(replay)

    sub.add_parser("impls", help="list the implementations greenfuzz knows and which of "
                                 "them this machine can run")

    diff = sub.add_parser(
        "diff", help="run the same programs on two implementations and report where they "
                     "disagree (each --impl or --known starts a side; --python, --greenlet "
                     "and --profile after it apply to that side)")
    diff.add_argument("--impl", action=_NewSide, dest="sides", metavar="SPEC",
                      help="a side: module name or .py path")
    diff.add_argument("--known", action=_NewSide, dest="sides", metavar="NAME",
                      help="a side from 'greenfuzz impls'")
    for option in ("--python", "--greenlet", "--profile"):
        diff.add_argument(option, action=_SideOption, dest="sides",
                          help=f"{option[2:]} of the side before it")
    diff.add_argument("--timeout", type=_positive(float, "--timeout"), default=2.0)
    diff.add_argument("--budget", type=_positive(float, "--budget"), default=60.0)
    diff.add_argument("--max-examples", type=_positive(int, "--max-examples"), default=10**9)
    diff.add_argument("--seed", type=int, default=None)
    diff.add_argument("--out", type=Path, default=Path("greenfuzz-diffs"))
    diff.add_argument("--keep-going", action="store_true")
    diff.add_argument("--families", type=_families, default=FAMILIES)

    matrix = sub.add_parser("matrix", help="compatibility matrix: a fixed budget per "
                                           "implementation and family, as Markdown and HTML")
    matrix.add_argument("names", nargs="*", metavar="NAME",
                        help=f"implementations from 'greenfuzz impls', greenlet-X.Y.Z or a "
                             ".py implementation file "
                             f"(default: {' '.join(catalog.names())})")
    matrix.add_argument("--families", type=_families, default=FAMILIES)
    matrix.add_argument("--budget", type=_positive(float, "--budget"), default=20.0,
                        help="seconds per cell (default 20)")
    matrix.add_argument("--seed", type=int, default=0)
    matrix.add_argument("--timeout", type=_positive(float, "--timeout"), default=2.0)
    matrix.add_argument("--out", type=Path, default=Path("greenfuzz-matrix"))
    matrix.add_argument("--no-profiles", action="store_true",
                        help="count documented differences as findings too")

    sc = sub.add_parser("scale", help="run one large recipe (up to millions of greenlets) "
                                      "with every value checked")
    sc.add_argument("--greenlets", type=_positive(int, "--greenlets"), default=100_000)
    sc.add_argument("--shape", choices=scale.SHAPES, default="parked",
                    help="parked (all alive at once, then finished/killed), waves "
                         "(short-lived), chain (parent chain), ring, tree")
    sc.add_argument("--rounds", type=int, default=1, help="resumes per greenlet (parked, "
                                                          "ring)")
    sc.add_argument("--depth", type=int, default=0, help="levels each parked greenlet "
                                                         "descends first")
    sc.add_argument("--via", choices=scale.VIAS, default="python",
                    help="how it descends: Python calls or calls through C")
    sc.add_argument("--wave", type=_positive(int, "--wave"), default=1000)
    sc.add_argument("--seed", type=int, default=0)
    sc.add_argument("--impl", default="greenlet")
    sc.add_argument("--python", default=None, metavar="PATH")
    sc.add_argument("--greenlet", default=None, metavar="VERSION")
    sc.add_argument("--stall", type=_positive(float, "--stall"), default=120.0,
                    help="seconds without progress that count as a hang (default 120)")
    sc.add_argument("--out", type=Path, default=Path("greenfuzz-findings"))
    sc.add_argument("--no-shrink", action="store_true")
    sc.add_argument("--json", action="store_true", help="print the result as JSON")

    env = sub.add_parser("env", help="make (once) and print an interpreter with a given "
                                     "greenlet release; without options, list those made")
    env.add_argument("--python", default=None, metavar="PATH",
                     help="the interpreter to base it on (default: this one)")
    env.add_argument("--greenlet", default=None, metavar="VERSION",
                     help="the greenlet release to install from the package index")
    env.add_argument("--arch", default=None, choices=sorted(arch.CPUS), metavar="ARCH",
                     help="build (once) a Debian root filesystem for this CPU "
                          f"({', '.join(arch.CPUS)}) and print its launcher")

    memprofile.add_parser(sub, _positive)
    return parser


class _NewSide(argparse.Action):
    """``diff``: ``--impl``/``--known`` start a side."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: Optional[str] = None) -> None:
        sides = list(getattr(namespace, "sides", None) or [])
        key = "known" if option_string == "--known" else "impl"
        sides.append({key: values})
        namespace.sides = sides


class _SideOption(argparse.Action):
    """``diff``: ``--python``/``--greenlet``/``--profile`` belong to the side before them."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: Optional[str] = None) -> None:
        sides = getattr(namespace, "sides", None)
        if not sides:
            raise UsageError(f"{option_string} must follow the --impl or --known it is for")
        key = (option_string or "").lstrip("-")
        if key in sides[-1]:
            raise UsageError(f"{option_string} given twice for one side")
        sides[-1][key] = values


def _prepare(args: argparse.Namespace, **extra
             ) -> Tuple[CampaignConfig, Optional[IsolatedExecutor]]:
    """Check the implementation, here or in the started worker that is returned to run
    the programs (None in-process); the caller closes it."""
    if args.in_process and (args.python or args.greenlet or args.known):
        other = "--python" if args.python else "--greenlet" if args.greenlet else "--known"
        raise UsageError("--in-process runs programs in this interpreter; it cannot be "
                         f"combined with {other}")
    if args.known:
        if args.python or args.greenlet or args.impl != "greenlet":
            raise UsageError("--known sets the implementation and interpreter; it cannot be "
                             "combined with --impl, --python or --greenlet")
        try:
            target = catalog.resolve(args.known)
        except KeyError:
            raise UsageError(f"unknown implementation name {args.known!r}; see "
                             "'greenfuzz impls'") from None
        except catalog.Unavailable as e:
            raise UsageError(f"{args.known}: {e}") from None
        args.impl, args.python = target.impl, target.python
    memory_limit: Optional[int] = 4 << 30
    if getattr(args, "arch", None):
        if args.python or args.known:
            raise UsageError("--arch runs the target's own python3; it cannot be combined "
                             f"with {'--python' if args.python else '--known'}")
        try:
            args.python = arch.prepare(args.arch, args.greenlet)
        except arch.ArchError as e:
            raise UsageError(str(e)) from None
        args.greenlet = None  # installed into the target by arch.prepare
        args.timeout *= arch.SLOWDOWN
        memory_limit = None  # qemu's own mappings count against RLIMIT_AS
    try:
        if args.greenlet:
            args.python = envs.greenlet_python(args.greenlet, args.python)
        elif args.python:
            args.python = envs.find_interpreter(args.python)
    except envs.EnvError as e:
        raise UsageError(str(e)) from None
    executor = None
    try:
        if args.in_process:
            impl = implementations.load(args.impl)
        else:
            executor = IsolatedExecutor(
                args.impl, python=args.python or sys.executable, timeout=args.timeout,
                memory_limit=memory_limit,
                programs_per_child=getattr(args, "programs_per_child", 1))
            executor.start()
            impl = implementations.from_worker(args.impl, executor.info, args.python or "")
    except implementations.ImplementationError as e:
        if executor is not None:
            executor.close()
        hint = ""
        if "No module named 'greenlet'" in str(e) and not args.greenlet:
            hint = "; add --greenlet VERSION to use a release from the package index"
        raise UsageError(f"{e}{hint}") from None
    profile = None
    if args.profile:
        try:
            profile = profiles.load(args.profile)
        except profiles.ProfileError as e:
            if executor is not None:
                executor.close()
            raise UsageError(str(e)) from None
    config = CampaignConfig(impl=impl, python=args.python, isolate=not args.in_process,
                            profile=profile,
                            verify=not getattr(args, "no_verify", True),
                            timeout=args.timeout, **extra)
    return config, executor


def cmd_fuzz(args: argparse.Namespace, console: Console) -> int:
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot create output folder {args.out}: {e.strerror}") from None
    config, executor = _prepare(
        args, out=args.out, budget=args.budget, max_examples=args.max_examples,
        seed=args.seed, keep_going=args.keep_going, max_greenlets=args.max_greenlets,
        families=args.families, memory=not (args.no_memory or args.arch),
        programs_per_child=args.programs_per_child,
        memory_share=args.memory_share, parked_budget=args.parked_budget)
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


def _fuzz(args: argparse.Namespace, console: Console, config: CampaignConfig,
          executor: Optional[IsolatedExecutor]) -> int:
    impl = config.impl
    for name in impl.missing_optional:
        console.print(f"note: {impl.spec} has no {name}(); checks that need it are skipped")
    per = args.programs_per_child
    mode = ("in-process" if args.in_process else "isolated (a fresh child per program)"
            if per == 1 else f"isolated (a forked child per {per} programs; a failure is "
            "run again in a fresh one)")
    console.print(f"greenfuzz: fuzzing {impl.name} for {args.budget:g} s, {mode}")

    last = [0.0]

    def progress(r: CampaignResult) -> None:
        if not args.quiet and r.elapsed - last[0] >= 5.0:
            last[0] = r.elapsed
            rate = r.examples / r.elapsed if r.elapsed else 0.0
            console.print(f"  {r.examples} programs, {rate:.0f}/s, "
                          f"{len(r.findings)} finding(s), {r.elapsed:.0f} s",
                          highlight=False)

    result = run_campaign(config, progress, executor)
    _summary(console, impl, result)
    return EXIT_FINDING if result.findings else EXIT_OK


def _summary(console: Console, impl: implementations.Implementation,
             result: CampaignResult) -> None:
    rate = result.examples / result.elapsed if result.elapsed else 0.0
    table = Table(title=f"greenfuzz on {impl.name}", show_header=False)
    table.add_row("programs run", str(result.examples))
    table.add_row("time", f"{result.elapsed:.1f} s ({rate:.0f} programs/s)")
    table.add_row("findings", str(len(result.findings)))
    if result.known:
        table.add_row("known differences (programs)", ", ".join(
            f"{name} {count}" for name, count in sorted(result.known.items())))
    if result.family_counts:
        table.add_row("families (programs)", ", ".join(
            f"{name} {count}" for name, count in result.family_counts.items()))
    if result.state_dependent:
        table.add_row("failed only after other programs", f"{result.state_dependent} (passed "
                      "in a fresh child; see the note)")
    if result.memory_checks:
        table.add_row("raw-memory checks", f"{result.memory_checks} "
                                           f"({result.memory_seconds:.1f} s)")
    if impl.missing_optional:
        table.add_row("skipped", ", ".join(f"checks needing {n}()" for n in
                                           impl.missing_optional))
    if result.model_errors:
        table.add_row("model errors", f"{result.model_errors} programs skipped (a greenfuzz "
                                      "bug: please report)")
    console.print(table)
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


def cmd_replay(args: argparse.Namespace, console: Console) -> int:
    from harness.findings import load_program

    try:
        program = load_program(args.file)
    except ProgramError as e:
        raise UsageError(str(e)) from None
    config, executor = _prepare(args, out=Path(os.devnull))
    impl = config.impl
    try:
        finding = judge(program, config, executor)
    finally:
        if executor is not None:
            executor.close()
    if finding.verdict.ok:
        console.print(f"OK: {impl.name} agrees with the model on {args.file}")
        return EXIT_OK
    if finding.kind == profiles.KNOWN:
        console.print(f"KNOWN: {impl.name} differs from the model on {args.file} as its "
                      "profile documents:", markup=False)
        console.print("  " + finding.verdict.summary.replace("\n", "\n  "), markup=False)
        return EXIT_OK
    console.print(finding.report(), markup=False)
    return EXIT_FINDING


def cmd_impls(args: argparse.Namespace, console: Console) -> int:
    table = Table(title="implementations greenfuzz knows")
    for column in ("name", "what", "here", "options"):
        table.add_column(column)
    for known, here in catalog.survey():
        table.add_row(known.name, known.description, here, known.options)
    console.print(table)
    console.print("Any release: greenlet-X.Y.Z (matrix, diff --known) or --greenlet X.Y.Z. "
                  f"Profiles of documented differences: {', '.join(profiles.names())}.")
    return EXIT_OK


def _side(spec: dict, timeout: float) -> Side:
    """A started worker for one side of ``diff`` (the caller closes it)."""
    if "known" in spec:
        try:
            target = catalog.resolve(spec["known"])
        except KeyError:
            raise UsageError(f"unknown implementation name {spec['known']!r}; see "
                             "'greenfuzz impls'") from None
        except catalog.Unavailable as e:
            raise UsageError(f"{spec['known']}: {e}") from None
        impl_spec, python, greenlet = target.impl, target.python, spec.get("greenlet")
        label = spec["known"]
    else:
        impl_spec, python, greenlet = spec["impl"], spec.get("python"), spec.get("greenlet")
        label = impl_spec + (f"@{greenlet}" if greenlet else "") + (
            f" ({python})" if python else "")
    args = argparse.Namespace(impl=impl_spec, python=python, greenlet=greenlet, known=None,
                              profile=spec.get("profile"), in_process=False, timeout=timeout)
    config, executor = _prepare(args, out=Path(os.devnull))
    assert executor is not None
    return Side(label, config, executor)


def cmd_diff(args: argparse.Namespace, console: Console) -> int:
    sides_spec = getattr(args, "sides", None) or []
    if len(sides_spec) != 2:
        raise UsageError(f"diff needs exactly two sides (--impl or --known), got "
                         f"{len(sides_spec)}")
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot create output folder {args.out}: {e.strerror}") from None
    sides: List[Side] = []
    try:
        for spec in sides_spec:
            sides.append(_side(spec, args.timeout))
        console.print(f"greenfuzz: {sides[0].config.impl.name} vs {sides[1].config.impl.name}, "
                      f"{args.budget:g} s", markup=False)
        result = run_diff(sides, out=args.out, budget=args.budget,
                          max_examples=args.max_examples, seed_value=args.seed,
                          keep_going=args.keep_going, families=args.families)
    finally:
        for side in sides:
            side.executor.close()
    console.print(f"{result.examples} programs in {result.elapsed:.1f} s, "
                  f"{len(result.disagreements)} disagreement(s)")
    for known, count in sorted(result.known.items()):
        console.print(f"  known difference {known}: {count} programs", markup=False)
    for disagreement in result.disagreements:
        console.print(disagreement.report(), markup=False)
    for path in result.saved:
        console.print(f"  wrote {path}", markup=False)
    return EXIT_FINDING if result.disagreements else EXIT_OK


def cmd_matrix(args: argparse.Namespace, console: Console) -> int:
    names = args.names or catalog.names()
    for name in names:
        base = name.partition("@")[0]
        if base not in catalog.names() and not base.startswith("greenlet-") \
                and not name.endswith(".py"):
            raise UsageError(f"unknown implementation name {name!r}; see 'greenfuzz impls'")
    cells = len(names) * len(args.families)
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("matrix", total=cells)

        def progress(name: str, family: str, cell: Optional[Cell]) -> None:
            if not family:  # the whole row is skipped
                bar.advance(task, len(args.families))
            elif cell is None:
                bar.update(task, description=f"{name} / {family}")
            else:
                bar.advance(task)

        rows = run_matrix(names, args.families, out=args.out, budget=args.budget,
                          seed=args.seed, timeout=args.timeout,
                          use_profiles=not args.no_profiles, progress=progress)
    console.print(markdown(rows, args.families, args.out, args.budget), markup=False)
    for name in ("matrix.md", "matrix.html", "matrix.json"):
        console.print(f"wrote {args.out / name}", markup=False)
    return EXIT_OK


def cmd_env(args: argparse.Namespace, console: Console) -> int:
    if args.arch:
        if args.python:
            raise UsageError("--arch uses the target's own python3; drop --python")
        try:
            print(arch.prepare(args.arch, args.greenlet))
        except arch.ArchError as e:
            raise UsageError(str(e)) from None
        return EXIT_OK
    if args.greenlet is None:
        if args.python:
            raise UsageError("env --python needs --greenlet VERSION")
        made = envs.cached()
        targets = arch.prepared()
        if not made and not targets:
            console.print(f"no environments yet (cache: {envs.cache_root()})")
        for info in made:
            label = info.get("label") or f"greenlet-{info.get('greenlet')}"
            console.print(f"{label:<28} {info['tag']:<22} {info['python']}", markup=False)
        for target in targets:
            console.print(f"{target:<28} root filesystem        {arch.root() / target}",
                          markup=False)
        return EXIT_OK
    try:
        python = envs.greenlet_python(args.greenlet, args.python)
    except envs.EnvError as e:
        raise UsageError(str(e)) from None
    print(python)
    return EXIT_OK


def cmd_scale(args: argparse.Namespace, console: Console) -> int:
    try:
        recipe = scale.Recipe(args.shape, args.greenlets, args.rounds, args.depth, args.via,
                              args.wave, seed=args.seed)
    except ValueError as e:
        raise UsageError(str(e)) from None
    need, have = recipe.peak_bytes(), scale.available_bytes()
    if need > have:
        raise UsageError(f"{recipe.greenlets} {recipe.shape} greenlets need about "
                         f"{need / 2**30:.1f} GiB; {have / 2**30:.1f} GiB is available")
    try:
        python = (envs.greenlet_python(args.greenlet, args.python) if args.greenlet else
                  envs.find_interpreter(args.python) if args.python else None)
    except envs.EnvError as e:
        raise UsageError(str(e)) from None
    if args.impl.endswith(".py") and not os.path.exists(args.impl):
        raise UsageError(f"implementation file not found: {args.impl}")
    quiet = args.json
    with Progress(console=console, transient=True, disable=quiet) as bar:
        task = bar.add_task("starting", total=None)

        def progress(line: dict) -> None:
            if "progress" in line:
                bar.update(task, description=f"{line['progress']}: {line['live']:,} live, "
                                             f"RSS {line['rss'] / 2**20:,.0f} MiB",
                           completed=line["done"], total=line["total"])
            elif "phase" in line and not quiet:
                bar.console.print(
                    f"  {line['phase']:<16} {line['seconds']:>8.2f} s  "
                    f"{line['switches_per_second']:>10,} switches/s  "
                    f"peak RSS {line['peak_rss'] / 2**20:>8,.0f} MiB"
                    + (f"  {line['bytes_per_live']:,} bytes per live greenlet"
                       if "bytes_per_live" in line else ""), markup=False)

        if not quiet:
            console.print(f"greenfuzz scale: {recipe.shape}, {recipe.greenlets:,} greenlets "
                          f"on {args.impl}", markup=False)
        result = scale.run_recipe(recipe, args.impl, python, args.stall, progress)
        saved: List[Path] = []
        if not result.ok:
            if not args.no_shrink:
                bar.update(task, description="shrinking the recipe", total=None)
                result = scale.shrink(result, args.impl, python, args.stall)
            saved = scale.save(result, args.impl, args.out)
    if args.json:
        print(json.dumps({"recipe": recipe.to_json(), "outcome": result.outcome,
                          "shrunk_recipe": result.recipe.to_json(), "phases": result.phases,
                          "finding": result.finding, "detail": result.detail,
                          "done": result.done, "saved": [str(p) for p in saved]}))
    elif result.ok:
        console.print(f"no findings: {result.done.get('switches', 0):,} switches checked in "
                      f"{result.seconds:.1f} s, peak {result.done.get('peak_live', 0):,} live "
                      f"greenlets, peak RSS {result.done.get('peak_rss', 0) / 2**20:,.0f} MiB"
                      + ("; liveness checked exactly at every kill and by weak references "
                         f"to every {recipe.sample}-th greenlet" if recipe.shape in
                         ("parked", "waves") else ""), markup=False)
    else:
        what = result.finding or {"outcome": result.outcome, "detail": result.detail}
        console.print(f"[{result.outcome}] with {result.recipe.greenlets:,} greenlets: "
                      f"{json.dumps(what)}", markup=False)
        for path in saved:
            console.print(f"  wrote {path}", markup=False)
    return EXIT_OK if result.ok else EXIT_FINDING


COMMANDS = {"fuzz": cmd_fuzz, "replay": cmd_replay, "env": cmd_env, "impls": cmd_impls,
            "diff": cmd_diff, "matrix": cmd_matrix, "scale": cmd_scale}


def cmd_profile(args: argparse.Namespace, console: Console) -> int:
    """``greenfuzz profile`` (``harness.memprofile``): exit 1 when a target could not be
    measured or the plain script disagrees with the harness."""
    try:
        return memprofile.run(args, console)
    except memprofile.ProfileError as e:
        raise UsageError(str(e)) from None


COMMANDS["profile"] = cmd_profile


def main(argv: Optional[Sequence[str]] = None) -> int:
    console = Console(highlight=False, soft_wrap=True)
    try:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command](args, console)
    except UsageError as e:
        message = " ".join(str(e).split())  # one line, whatever the cause looked like
        print(f"greenfuzz: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("greenfuzz: interrupted", file=sys.stderr)
        return 130
