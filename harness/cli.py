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
from typing import NoReturn, Optional, Sequence, Tuple

from rich.console import Console
from rich.table import Table

from harness import envs, implementations
from harness.campaign import CampaignConfig, CampaignResult, judge, run_campaign
from harness.executor import IsolatedExecutor
from harness.ir import ProgramError

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
    fuzz.add_argument("--no-verify", action="store_true",
                      help="do not run each finding's reproducer standalone to confirm it")
    fuzz.add_argument("--quiet", action="store_true", help="no progress output")

    replay = sub.add_parser("replay", help="run a saved program again: exit 1 if it "
                                           "still fails")
    replay.add_argument("file", type=Path, help="a finding's .json (or a program .json)")
    _add_impl(replay)

    env = sub.add_parser("env", help="make (once) and print an interpreter with a given "
                                     "greenlet release; without options, list those made")
    env.add_argument("--python", default=None, metavar="PATH",
                     help="the interpreter to base it on (default: this one)")
    env.add_argument("--greenlet", default=None, metavar="VERSION",
                     help="the greenlet release to install from the package index")
    return parser


def _prepare(args: argparse.Namespace, **extra
             ) -> Tuple[CampaignConfig, Optional[IsolatedExecutor]]:
    """Check the implementation, here or in the started worker that is returned to run
    the programs (None in-process); the caller closes it."""
    if args.in_process and (args.python or args.greenlet):
        raise UsageError("--in-process runs programs in this interpreter; it cannot be "
                         f"combined with {'--python' if args.python else '--greenlet'}")
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
            executor = IsolatedExecutor(args.impl, python=args.python or sys.executable,
                                        timeout=args.timeout)
            executor.start()
            impl = implementations.from_worker(args.impl, executor.info, args.python or "")
    except implementations.ImplementationError as e:
        if executor is not None:
            executor.close()
        hint = ""
        if "No module named 'greenlet'" in str(e) and not args.greenlet:
            hint = "; add --greenlet VERSION to use a release from the package index"
        raise UsageError(f"{e}{hint}") from None
    config = CampaignConfig(impl=impl, python=args.python, isolate=not args.in_process,
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
        seed=args.seed, keep_going=args.keep_going, max_greenlets=args.max_greenlets)
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
    mode = "in-process" if args.in_process else "isolated (a forked child per program)"
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
    console.print(finding.report(), markup=False)
    return EXIT_FINDING


def cmd_env(args: argparse.Namespace, console: Console) -> int:
    if args.greenlet is None:
        if args.python:
            raise UsageError("env --python needs --greenlet VERSION")
        made = envs.cached()
        if not made:
            console.print(f"no environments yet (cache: {envs.cache_root()})")
        for info in made:
            console.print(f"greenlet {info['greenlet']:<8} {info['tag']:<24} {info['python']}",
                          markup=False)
        return EXIT_OK
    try:
        python = envs.greenlet_python(args.greenlet, args.python)
    except envs.EnvError as e:
        raise UsageError(str(e)) from None
    print(python)
    return EXIT_OK


COMMANDS = {"fuzz": cmd_fuzz, "replay": cmd_replay, "env": cmd_env}


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
