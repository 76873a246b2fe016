"""``greenfuzz env``: interpreters with a given greenlet release, or for another CPU."""

from __future__ import annotations

import argparse

from rich.console import Console

from greenfuzz.harness.cli.common import (
    EXIT_OK,
    UsageError,
)
from greenfuzz.harness.envs import arch, envs


def add_parser(sub: argparse._SubParsersAction) -> None:
    env = sub.add_parser("env", help="make (once) and print an interpreter with a given "
                                     "greenlet release; without options, list those made")
    env.add_argument("--python", default=None, metavar="PATH",
                     help="the interpreter to base it on (default: this one)")
    env.add_argument("--greenlet", default=None, metavar="VERSION",
                     help="the greenlet release to install from the package index")
    env.add_argument("--arch", default=None, choices=sorted(arch.CPUS), metavar="ARCH",
                     help="build (once) a Debian root filesystem for this CPU "
                          f"({', '.join(arch.CPUS)}) and print its launcher")


def run(args: argparse.Namespace, console: Console) -> int:
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
