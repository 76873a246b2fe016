"""A finding's two files appear together or not at all, with ordinary modes, and what
a killed run left half written is cleaned at the next start."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from greenfuzz.harness.reporting import findings


def test_pair_has_ordinary_modes(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        findings.write_pair(tmp_path / "mismatch-0123456789.json", "{}\n",
                            tmp_path / "mismatch-0123456789.py", "print()\n")
    finally:
        os.umask(old)
    for name in ("mismatch-0123456789.json", "mismatch-0123456789.py"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "mismatch-0123456789.json", "mismatch-0123456789.py"]


def test_a_failed_write_leaves_neither_file(tmp_path: Path, monkeypatch) -> None:
    real = findings._write_temporary
    calls = []

    def second_fails(path: Path, text: str) -> str:
        calls.append(path)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real(path, text)

    monkeypatch.setattr(findings, "_write_temporary", second_fails)
    with pytest.raises(OSError):
        findings.write_pair(tmp_path / "hang-0123456789.json", "{}",
                            tmp_path / "hang-0123456789.py", "")
    assert list(tmp_path.iterdir()) == []


def test_a_kill_between_renames_is_cleaned_up(tmp_path: Path, monkeypatch) -> None:
    """The reproducer is renamed first: a kill before the second rename leaves it alone
    (and a temporary file), never a .json without its .py; the next start removes both."""
    real = os.replace
    renames = []

    def killed_after_first(src: str, dst: Path) -> None:
        renames.append(dst)
        if len(renames) == 2:
            raise KeyboardInterrupt  # stands for the kill
        real(src, dst)

    monkeypatch.setattr(os, "replace", killed_after_first)
    with pytest.raises(KeyboardInterrupt):
        findings.write_pair(tmp_path / "crash-0123456789.json", "{}",
                            tmp_path / "crash-0123456789.py", "")
    monkeypatch.setattr(os, "replace", real)
    assert not (tmp_path / "crash-0123456789.json").exists()
    # What SIGKILL would have left: the lone .py, and a temporary file of a dead process.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (tmp_path / f".crash-0123456789.json.{dead}.abcd1234.tmp").write_text("{")
    live = tmp_path / f".other-0123456789.json.{os.getpid()}.abcd1234.tmp"
    live.write_text("{")  # a run writing now: kept
    kept = ["notes.py", "mismatch-0123456789.json", "mismatch-0123456789.py", live.name]
    for name in kept[:3]:
        (tmp_path / name).write_text("")
    removed = findings.clean_stale(tmp_path)
    assert sorted(removed) == sorted(["crash-0123456789.py",
                                      f".crash-0123456789.json.{dead}.abcd1234.tmp"])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept)
