"""The pytest plugin: greenfuzz as module-level Hypothesis tests in anyone's test suite.

Installed with greenfuzz (the ``pytest11`` entry point ``greenfuzz``).  A test module
needs one line::

    from greenfuzz.harness.extra.pytest_plugin import fuzz_test

    test_greenlet_agrees_with_model = fuzz_test()                 # --greenfuzz-impl, or:
    test_mine_agrees_with_model = fuzz_test(impl="mypkg.greenlet", families=("core",))

The result is an ordinary module-level ``@given`` test (parametrized into shards), so
``pytest -n auto`` spreads it over workers, Hypothesis's example database replays its
failures first, and HypoFuzz (``hypothesis fuzz -- tests/``) collects and fuzzes it.  A
suite that wants its own test body uses the ``greenfuzz`` fixture:
``greenfuzz.campaign(impl)`` gives ``programs`` (a strategy) and ``check(program)``.

Options (``pytest --help``, group greenfuzz) choose the implementation, interpreter,
greenlet release, families, documented differences and findings folder; on the
greenlet package, its release's bundled profiles apply as in ``greenfuzz fuzz``.  Each
failing program's smallest example per kind of failure is written to the findings folder
as the usual ``<id>.json`` and ``<id>.py``; at the end of the session ``summary.json`` goes
there too (merged over pytest-xdist workers), with a Markdown summary and ``::error``
lines under GitHub Actions.  pytest's own ``--junit-xml`` gives the JUnit XML.

Hypothesis settings profiles ``greenfuzz-dev`` (100 programs per test), ``greenfuzz-ci``
(400) and ``greenfuzz-deep`` (20,000) are registered, none loaded unless asked:
``--hypothesis-profile NAME``, ``GREENFUZZ_HYPOTHESIS_PROFILE=NAME`` (``dev``, ``ci``,
``deep``, or ``auto``: ``ci`` when ``CI`` is set, else ``dev``) or the ini option
``greenfuzz_hypothesis_profile``.  ``GREENFUZZ_DATABASE`` puts their example database in
a directory (for instance on a file system several machines share) or a Redis server
(``redis://host:port``, needs ``greenfuzz[distributed]``); setting it loads ``auto``
unless a profile is named.  That is how HypoFuzz workers on several machines share one
campaign.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import pytest
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from hypothesis.database import DirectoryBasedExampleDatabase, ExampleDatabase

from greenfuzz.harness import model
from greenfuzz.harness.envs import envs
from greenfuzz.harness.execution import implementations
from greenfuzz.harness.execution.executor import IsolatedExecutor
from greenfuzz.harness.judging import differences
from greenfuzz.harness.judging.differences import KNOWN
from greenfuzz.harness.program.ir import FAMILIES, Program, program_families
from greenfuzz.harness.reporting import ci
from greenfuzz.harness.reporting.findings import Finding
from greenfuzz.harness.search.campaign import (
    DEFAULT_PROGRAMS_PER_CHILD,
    CampaignConfig,
    drawable_families,
    judge,
)
from greenfuzz.strategies import programs

#: Environment variables: the Hypothesis settings profile, and its old name.
PROFILE_VARIABLE, OLD_PROFILE_VARIABLE = "GREENFUZZ_HYPOTHESIS_PROFILE", "GREENFUZZ_PROFILE"
DATABASE_VARIABLE = "GREENFUZZ_DATABASE"
PROFILES = {"dev": 100, "ci": 400, "deep": 20_000}
#: Shards a ``fuzz_test`` is parametrized into unless told (so ``-n 2`` keeps both busy).
SHARDS_VARIABLE = "GREENFUZZ_SHARDS"


def database(where: Optional[str]) -> Optional[ExampleDatabase]:
    """The example database ``GREENFUZZ_DATABASE`` names: a directory or ``redis://``."""
    if not where:
        return None
    if where.startswith(("redis://", "rediss://", "unix://")):
        try:
            import redis
            from hypothesis.extra.redis import RedisExampleDatabase
        except ImportError:
            raise pytest.UsageError(f"{DATABASE_VARIABLE}={where} needs the redis package: "
                                    "pip install 'greenfuzz[distributed]'") from None
        return RedisExampleDatabase(redis.Redis.from_url(where))
    return DirectoryBasedExampleDatabase(where)


def register_profiles() -> None:
    common: Dict[str, Any] = dict(
        deadline=None, derandomize=False,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    shared = database(os.environ.get(DATABASE_VARIABLE))
    if shared is not None:
        common["database"] = shared
    for name, examples in PROFILES.items():
        settings.register_profile(f"greenfuzz-{name}", max_examples=examples,
                                  print_blob=name == "ci", **common)


register_profiles()


def profile_name(asked: str) -> str:
    """``greenfuzz-<name>`` for ``dev``/``ci``/``deep``/``auto`` (with or without the
    prefix); anything else is another registered profile's own name."""
    bare = asked[len("greenfuzz-"):] if asked.startswith("greenfuzz-") else asked
    if bare == "auto":
        bare = "ci" if os.environ.get("CI") else "dev"
    return f"greenfuzz-{bare}" if bare in PROFILES else asked


# -- options ---------------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("greenfuzz", "greenfuzz: fuzz implementations of the greenlet API")
    group.addoption("--greenfuzz-impl", default=None, metavar="SPEC",
                    help="implementation the greenfuzz tests run against: a module name or "
                         "a .py path (default: the ini option greenfuzz_impl, else greenlet)")
    group.addoption("--greenfuzz-python", default=None, metavar="PATH",
                    help="run the programs under this interpreter")
    group.addoption("--greenfuzz-greenlet", default=None, metavar="VERSION",
                    help="run the programs on this greenlet release from the package index "
                         "(a cached virtual environment; see 'greenfuzz env')")
    group.addoption("--greenfuzz-families", default=None, metavar="A,B",
                    help=f"families to draw programs from (default all: {','.join(FAMILIES)})")
    group.addoption("--greenfuzz-differences", default=None, metavar="NAME|PATH",
                    help="documented differences of the implementation (bundled: "
                         f"{', '.join(differences.names())}, or a .json file)")
    group.addoption("--greenfuzz-findings", default=None, type=Path, metavar="DIR",
                    help="folder for findings and summary.json (default "
                         "greenfuzz-findings/pytest; shared by all workers)")
    group.addoption("--greenfuzz-timeout", default=None, type=float, metavar="SECONDS",
                    help="seconds one program may run before it counts as a hang (default 5)")
    group.addoption("--greenfuzz-sarif", default=None, type=Path, metavar="PATH",
                    help="also write the session's findings as SARIF 2.1.0")
    parser.addini("greenfuzz_impl", "default --greenfuzz-impl", default="greenlet")
    parser.addini("greenfuzz_hypothesis_profile",
                  "Hypothesis settings profile to load (dev, ci, deep or auto)", default="")


def _families(text: Optional[str]) -> Tuple[str, ...]:
    if not text:
        return FAMILIES
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in FAMILIES]
    if unknown or not names:
        raise pytest.UsageError(f"--greenfuzz-families: unknown family {', '.join(unknown)}; "
                                f"choose from {','.join(FAMILIES)}")
    return tuple(f for f in FAMILIES if f in names or f == "core")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "greenfuzz: a greenfuzz fuzz test (fuzz_test)")
    _families(config.getoption("greenfuzz_families"))  # a bad list is a usage error now
    if config.getoption("hypothesis_profile", None):
        return  # Hypothesis's own plugin loads the profile named on the command line
    asked = os.environ.get(PROFILE_VARIABLE, "")
    if not asked and os.environ.get(OLD_PROFILE_VARIABLE):
        asked = os.environ[OLD_PROFILE_VARIABLE]
        config.issue_config_time_warning(pytest.PytestDeprecationWarning(
            f"{OLD_PROFILE_VARIABLE} is deprecated: use {PROFILE_VARIABLE} (in greenfuzz, "
            "'profile' also names documented differences and memory profiles)"), stacklevel=2)
    asked = asked or config.getini("greenfuzz_hypothesis_profile") or (
        "auto" if os.environ.get(DATABASE_VARIABLE) else "")
    if asked:
        try:
            settings.load_profile(profile_name(asked))
        except Exception as e:  # InvalidArgument: not registered
            raise pytest.UsageError(f"Hypothesis settings profile {asked!r}: {e}") from None


# -- campaigns --------------------------------------------------------------------------------


class Campaign:
    """One implementation under test in this process: its worker, the strategy drawing
    its programs, and the smallest failing program per kind of failure."""

    def __init__(self, config: CampaignConfig, executor: Optional[IsolatedExecutor],
                 findings: Path, session: GreenfuzzSession, max_greenlets: int = 6) -> None:
        self.config = config
        self.executor = executor
        self.findings = findings
        self.session = session
        #: Programs drawn from the families the implementation can run.
        self.programs = programs(max_greenlets=max_greenlets,
                                 families=drawable_families(config))
        self.smallest: Dict[str, Finding] = {}

    def judge(self, program: Program) -> Finding:
        """Run one program and compare with the model (the verdict may be ok)."""
        self.session.count(program)
        return judge(program, self.config, self.executor)

    def check(self, program: Program) -> None:
        """Fail (AssertionError with the finding's report) unless the implementation
        agrees with the model or differs only as documented."""
        try:
            finding = self.judge(program)
        except model.ModelError:
            reject()  # a greenfuzz bug, not the implementation's; counted by Hypothesis
            raise AssertionError("unreachable") from None
        if finding.verdict.ok:
            return
        if finding.kind == KNOWN:
            self.session.known(finding.verdict.signature.split(":", 1)[1])
            return
        script = self.record(finding)
        raise AssertionError(f"{finding.report()}\n  reproducer: {script}")

    def record(self, finding: Finding) -> Path:
        """Keep the smallest failing program of each kind of failure on disk (Hypothesis
        and HypoFuzz shrink by running ever smaller ones); returns its reproducer."""
        signature = finding.verdict.signature
        before = self.smallest.get(signature)
        if before is not None and before.program.size() <= finding.program.size():
            return self.findings / f"{before.id}.py"
        finding = replace(finding, seed=self.session.pytest_config.stash.get(_SEED_KEY, None))
        self.smallest[signature] = finding
        paths = finding.save(self.findings)
        if before is not None and before.id != finding.id:
            for suffix in (".json", ".py", ".plain.py"):
                (self.findings / f"{before.id}{suffix}").unlink(missing_ok=True)
        self.session.found(finding, paths[1])
        return paths[1]


class GreenfuzzSession:
    """What the greenfuzz tests of one pytest process share: a campaign per
    implementation (each with one worker) and the counts for ``summary.json``."""

    def __init__(self, config: pytest.Config) -> None:
        self.pytest_config = config
        self.campaigns: Dict[Tuple[str, str, str], Campaign] = {}
        self.summary = ci.RunSummary("pytest", "")
        self.started = time.monotonic()
        findings = config.getoption("greenfuzz_findings") or Path("greenfuzz-findings/pytest")
        self.findings = Path(config.invocation_params.dir, findings)

    def campaign(self, impl: Optional[str] = None, *, families: Optional[Sequence[str]] = None,
                 max_greenlets: int = 6) -> Campaign:
        """The campaign on ``impl`` (default ``--greenfuzz-impl``), started on first use."""
        option = self.pytest_config.getoption
        spec = impl or option("greenfuzz_impl") or self.pytest_config.getini("greenfuzz_impl")
        if spec.endswith(".py"):
            spec = str(Path(self.pytest_config.invocation_params.dir, spec))
        chosen = tuple(families) if families else _families(option("greenfuzz_families"))
        key = (spec, ",".join(chosen), str(max_greenlets))
        if key not in self.campaigns:
            self.campaigns[key] = self._start(spec, chosen, max_greenlets)
        return self.campaigns[key]

    def _start(self, spec: str, families: Tuple[str, ...], max_greenlets: int) -> Campaign:
        option = self.pytest_config.getoption
        python, greenlet = option("greenfuzz_python"), option("greenfuzz_greenlet")
        timeout = option("greenfuzz_timeout") or 5.0
        try:
            if greenlet:
                python = envs.greenlet_python(greenlet, python)
            elif python:
                python = envs.find_interpreter(python)
        except envs.EnvError as e:
            pytest.fail(f"greenfuzz: {e}", pytrace=False)
        executor = IsolatedExecutor(spec, python=python or sys.executable, timeout=timeout,
                                    programs_per_child=DEFAULT_PROGRAMS_PER_CHILD)
        try:
            executor.start()
            impl = implementations.from_worker(spec, executor.info, python or "")
            documented = option("greenfuzz_differences")
            profile = differences.with_release(
                differences.load(documented) if documented else None, spec, impl.version,
                executor.info.get("python", ""))
        except (implementations.ImplementationError, differences.ProfileError) as e:
            executor.close()
            pytest.fail(f"greenfuzz: {e}", pytrace=False)
        config = CampaignConfig(impl=impl, out=self.findings, python=python, timeout=timeout,
                                families=families, profile=profile, verify=False,
                                max_greenlets=max_greenlets)
        names = {c.config.impl.spec for c in self.campaigns.values()} | {impl.spec}
        self.summary.implementation = ", ".join(sorted(names))
        self.summary.implementation_version = impl.version
        self.summary.interpreter = ci.interpreter(python, impl.python)
        return Campaign(config, executor, self.findings, self, max_greenlets)

    def count(self, program: Program) -> None:
        self.summary.programs += 1
        for name in program_families(program):
            self.summary.families[name] = self.summary.families.get(name, 0) + 1

    def known(self, difference: str) -> None:
        self.summary.known[difference] = self.summary.known.get(difference, 0) + 1

    def found(self, finding: Finding, script: Path) -> None:
        self.summary.findings = [f for f in self.summary.findings
                                 if f.get("signature") != finding.verdict.signature]
        self.summary.add(finding, script)
        self.summary.findings[-1]["signature"] = finding.verdict.signature

    def close(self) -> None:
        self.summary.seconds = round(time.monotonic() - self.started, 3)
        for campaign in self.campaigns.values():
            if campaign.executor is not None:
                campaign.executor.close()


_SESSION_KEY = pytest.StashKey[GreenfuzzSession]()
#: The seed of the fuzz test running now (with ``--hypothesis-seed``), for its findings.
_SEED_KEY = pytest.StashKey[int]()
_PARTS_KEY = pytest.StashKey[List[Dict[str, Any]]]()


@pytest.fixture(scope="session")
def greenfuzz(request: pytest.FixtureRequest) -> GreenfuzzSession:
    """This process's greenfuzz session: ``greenfuzz.campaign(impl)`` for a campaign."""
    session = request.config.stash.get(_SESSION_KEY, None)
    if session is None:
        session = request.config.stash[_SESSION_KEY] = GreenfuzzSession(request.config)
    return session


def fuzz_test(impl: Optional[str] = None, *, families: Optional[Sequence[str]] = None,
              max_greenlets: int = 6, shards: Optional[int] = None) -> Callable[..., None]:
    """A module-level test that fuzzes ``impl`` (default ``--greenfuzz-impl``) against
    the model; assign it to a ``test_...`` name in a test module.  It is parametrized into
    ``shards`` (default ``GREENFUZZ_SHARDS``, else 2) independent campaigns, so that
    ``pytest -n auto`` keeps every worker fuzzing; ``--hypothesis-seed`` makes each
    worker's and shard's programs reproducible (and different)."""
    count = shards if shards is not None else int(os.environ.get(SHARDS_VARIABLE, "2"))

    @pytest.mark.greenfuzz
    @pytest.mark.parametrize("shard", range(count))
    @settings(deadline=None, derandomize=False,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(data=st.data())
    def test_agrees_with_model(data: st.DataObject, greenfuzz: GreenfuzzSession,
                               shard: int) -> None:
        campaign = greenfuzz.campaign(impl, families=families, max_greenlets=max_greenlets)
        campaign.check(data.draw(campaign.programs, label="program"))

    return test_agrees_with_model


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    """With ``--hypothesis-seed N``, each worker and shard of a fuzz test gets a seed of
    its own derived from N (one seed for all would make them draw the same programs)."""
    base = item.config.getoption("hypothesis_seed", None)
    function = getattr(item, "obj", None)
    if base is not None and function is not None and item.get_closest_marker("greenfuzz"):
        worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").lstrip("gw") or 0)
        callspec = getattr(item, "callspec", None)
        shard = int(callspec.params.get("shard", 0)) if callspec is not None else 0
        chosen = (int(base) + worker) * 1000 + shard
        hypothesis_seed(chosen)(function)
        item.config.stash[_SEED_KEY] = chosen
    yield
    if _SEED_KEY in item.config.stash:
        del item.config.stash[_SEED_KEY]


def worker_output(summary: ci.RunSummary) -> Dict[str, Any]:
    """A worker's summary as plain JSON types: pytest-xdist sends ``workeroutput`` through
    execnet, which refuses ``str`` subclasses (a finding's ``Kind``); a worker whose
    output cannot be sent goes down, and its counts and findings never reach
    ``summary.json``."""
    return json.loads(json.dumps(summary.to_json()))


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """pytest-xdist: a worker's counts and findings, merged at the end."""
    part = getattr(node, "workeroutput", {}).get("greenfuzz")
    if part:
        node.config.stash.setdefault(_PARTS_KEY, []).append(part)


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Workers hand their summary to the controller; the controller (or a lone process)
    writes ``summary.json`` when any greenfuzz program ran."""
    config = session.config
    mine = config.stash.get(_SESSION_KEY, None)
    if mine is not None:
        mine.close()
    if hasattr(config, "workerinput"):  # a pytest-xdist worker
        if mine is not None:
            config.workeroutput["greenfuzz"] = worker_output(mine.summary)
        return
    parts = config.stash.get(_PARTS_KEY, [])
    if mine is None and not parts:
        return
    base = mine.summary if mine is not None else ci.RunSummary("pytest", "")
    summary = ci.merge(parts, base)
    if not summary.implementation:
        first = next((p for p in parts if p.get("implementation")), {})
        summary.implementation = first.get("implementation", "")
        summary.implementation_version = first.get("implementation_version", "")
        summary.interpreter = first.get("interpreter", {})
    seed = config.getoption("hypothesis_seed", None)
    summary.seed = int(seed) if isinstance(seed, str) and seed.isdigit() else seed
    for finding in summary.findings:
        finding.pop("signature", None)
    findings = config.getoption("greenfuzz_findings") or Path("greenfuzz-findings/pytest")
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    writer = getattr(reporter, "_tw", None)
    if writer is not None and writer.width_of_current_line:
        writer.line()  # after the progress: the ::error lines must start their own lines
    try:
        ci.write_all(summary, Path(config.invocation_params.dir, findings),
                     sarif_path=config.getoption("greenfuzz_sarif"))
    except OSError as e:
        print(f"greenfuzz: could not write the session summary: {e}", file=sys.stderr)
