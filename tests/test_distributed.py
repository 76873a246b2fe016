"""Beyond one machine: HypoFuzz workers sharing one example database in Redis.

Two HypoFuzz processes (``hypothesis fuzz``), one after the other, fuzz a mutant through
the pytest plugin with ``GREENFUZZ_DATABASE=redis://...`` (a real ``redis-server`` on a
free port of 127.0.0.1): the first finds and shrinks a failure; the second must run that
very program as its first input, which only the shared database can give it.  On
several machines the same commands run with the same ``GREENFUZZ_DATABASE``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, Iterator, List

import pytest

ROOT = Path(__file__).resolve().parent.parent
MUTANT = ROOT / "tests" / "mutants" / "no_args_none.py"

#: The test both HypoFuzz processes fuzz: the plugin's fixture, plus a log of every
#: failing program with its position among the programs this process ran.
TEST_MODULE = '''
import json
import os

from hypothesis import given
from hypothesis import strategies as st

RUN = [0]


@given(data=st.data())
def test_mutant_agrees_with_model(data, greenfuzz):
    campaign = greenfuzz.campaign()
    program = data.draw(campaign.programs, label="program")
    RUN[0] += 1
    finding = campaign.judge(program)
    if not finding.verdict.ok:
        with open(os.environ["GREENFUZZ_TEST_LOG"], "a") as log:
            log.write(json.dumps({"pid": os.getpid(), "input": RUN[0],
                                  "id": finding.id}) + "\\n")
    assert finding.verdict.ok, finding.report()
'''


def _hypofuzz_problem() -> str:
    """Why HypoFuzz cannot run here ('' when it can)."""
    try:
        import hypofuzz
        import redis  # noqa: F401
        from hypothesis.internal.conjecture.data import ConjectureResult
    except ImportError as e:
        return f"{e.name} is not installed (pip install 'greenfuzz[distributed]')"
    if "slice_comments" not in getattr(ConjectureResult, "__dataclass_fields__", {}):
        import hypothesis

        return (f"HypoFuzz {hypofuzz.__version__} needs a Hypothesis before 6.157.1 (it "
                f"reads ConjectureResult.slice_comments); this is {hypothesis.__version__}")
    return ""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A Redis server of its own on a free port, stopped at the end."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("no redis-server binary (apt-get install redis-server; .ci/run does)")
    problem = _hypofuzz_problem()
    if problem:
        pytest.skip(problem)
    import redis

    port = _free_port()
    server = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1",
                               "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = redis.Redis(port=port, socket_timeout=2)
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or server.poll() is not None:
                    pytest.fail(f"redis-server did not start on port {port}")
                time.sleep(0.1)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)


def _records(log: Path) -> List[Dict[str, object]]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def _hypofuzz(project: Path, env: Dict[str, str], output: Path) -> subprocess.Popen:
    """``hypothesis fuzz`` on the project, in a process group of its own (it starts a
    manager and a worker process), so that all of it can be killed."""
    command = [sys.executable, "-c", "from hypothesis.extra.cli import main; main()",
               "fuzz", "-n", "1", "--no-dashboard", "--", "test_mutant.py",
               "--greenfuzz-impl", str(MUTANT), "-p", "no:cacheprovider"]
    return subprocess.Popen(command, cwd=project, env=env, stdout=output.open("w"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def _kill(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


def _wait(condition, seconds: float, process: subprocess.Popen, output: Path) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {seconds:g} s; HypoFuzz said:\n"
                        + output.read_text()[-3000:])
        if process.poll() is not None:
            pytest.fail(f"HypoFuzz exited ({process.returncode}):\n"
                        + output.read_text()[-3000:])
        time.sleep(0.5)


@pytest.mark.slow
@pytest.mark.redis
def test_failure_found_by_one_hypofuzz_worker_is_replayed_by_another(
        tmp_path: Path, redis_url: str) -> None:
    import redis

    project = tmp_path / "project"
    project.mkdir()
    (project / "test_mutant.py").write_text(TEST_MODULE)
    log = tmp_path / "failures.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "GREENFUZZ_"))}
    env.update(GREENFUZZ_DATABASE=redis_url, GREENFUZZ_TEST_LOG=str(log))
    database = redis.Redis.from_url(redis_url)

    def shrunk_failure_saved() -> bool:
        """Both halves HypoFuzz writes (in the background) for a shrunk failure: its
        observation, and its choices under the test's own key, where Hypothesis keeps
        failures too."""
        marker = b".hypofuzz.failures.shrunk."
        return any(marker in key and database.exists(key[:key.index(marker)])
                   for key in database.keys("*"))

    first = _hypofuzz(project, env, tmp_path / "first.log")
    try:
        _wait(shrunk_failure_saved, 150, first, tmp_path / "first.log")
    finally:
        _kill(first)
    found = _records(log)
    assert found, "the first worker saved a failure but logged none"
    first_pid = found[0]["pid"]
    shrunk = [r for r in found if r["pid"] == first_pid][-1]["id"]

    second = _hypofuzz(project, env, tmp_path / "second.log")
    try:
        _wait(lambda: any(r["pid"] != first_pid for r in _records(log)), 120, second,
              tmp_path / "second.log")
    finally:
        _kill(second)
    replayed = [r for r in _records(log) if r["pid"] != first_pid]
    # The second worker's very first program is the first one's shrunk failure: it came
    # from the shared database (the mutant passes most programs: the first worker ran
    # several before one failed).
    assert replayed[0]["input"] == 1, replayed
    assert replayed[0]["id"] == shrunk, (replayed[0], shrunk)
