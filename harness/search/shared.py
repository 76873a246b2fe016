"""What the jobs of one ``greenfuzz fuzz --jobs N`` run share besides the findings folder
and the example database: a folder of the run's own (the controller makes it and removes
it) holding one claim per finding signature, and the request to stop.

A claim is a file named after the signature, made with ``os.link`` from a temporary file
that already holds the claimant's job and finding id: the link fails when the name
exists, so of two jobs finding the same failure exactly one saves it, and a reader never
sees a claim half written.  Claims live for one run only: a finding a previous run left
in the folder does not stop this one from reporting it again.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Optional


@dataclass(frozen=True)
class SharedRun:
    """One job's handle on the run's shared folder (``folder``; ``job`` is its index)."""

    folder: Path
    job: int

    def _claim(self, signature: str) -> Path:
        return self.folder / "claims" / hashlib.sha256(signature.encode()).hexdigest()[:32]

    def claim(self, signature: str, finding_id: str) -> Optional[str]:
        """Claim ``signature`` for this job: None when it is this job's now (or was
        already), else who holds it (``job K, <finding id>``)."""
        path = self._claim(signature)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{self.job}.")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(f"{self.job} {finding_id}")
            os.link(tmp, path)
            return None
        except FileExistsError:
            return self.holder(signature)
        finally:
            with suppress(OSError):
                os.unlink(tmp)

    def holder(self, signature: str) -> Optional[str]:
        """Who claimed ``signature`` when another job did (``job K, <finding id>``)."""
        try:
            job, _, finding_id = self._claim(signature).read_text().partition(" ")
        except OSError:
            return None
        return None if job == str(self.job) else f"job {job}, {finding_id}"

    def stop_requested(self) -> bool:
        """The controller asked every job to end (a confirmed finding, without
        ``--keep-going``): checked between programs, like the budget."""
        return (self.folder / "stop").exists()

    def request_stop(self) -> None:
        (self.folder / "stop").touch()
