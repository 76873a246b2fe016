"""``greenfuzz profile``: a small report on the installed greenlet."""

from __future__ import annotations

import json
from pathlib import Path

from greenfuzz.harness import cli


def test_profile_writes_a_report_that_agrees_with_a_plain_script(tmp_path: Path) -> None:
    out = tmp_path / "report"
    status = cli.main(["profile", "--out", str(out), "--counts", "500,2000",
                       "--depths", "0,20", "--c-depths", "0,3", "--depth-count", "500",
                       "--memray"])
    data = json.loads((out / "profile.json").read_text())
    (row,) = data["summary"]
    assert not row["errors"], row["errors"]
    # greenlet 3.x parks a greenlet in roughly 4 to 8 KiB on CPython 3.9 to 3.13
    assert 2000 < row["per_greenlet"] < 16000
    assert row["c_depths"]["3"] > row["c_depths"]["0"] + 1000  # copied C stack
    assert row["agrees"], (row["single"], row["plain"])
    assert status == 0
    scenarios = {m["scenario"] for m in data["measurements"]}
    assert scenarios == {"count", "depth-python", "depth-c", "single", "plain"}
    summary = (out / "summary.md").read_text()
    assert "| greenlet |" in summary and "(agrees)" in summary
    page = (out / "index.html").read_text()
    assert page.count("data:image/png;base64,") == 2 and "<table>" in page
    for png in ("count.png", "depth.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert any("memray" in note for note in data["notes"])


def test_profile_refuses_a_missing_implementation(tmp_path: Path, capsys) -> None:
    status = cli.main(["profile", "--out", str(tmp_path), "--impl", "nowhere/missing.py"])
    assert status == cli.EXIT_USAGE
    assert "not found" in capsys.readouterr().err
