"""Code that runs in the interpreter under test.

Standard library only, Python 3.9+, and nothing imported from the rest of greenfuzz:
these files are loaded by path under ``--python`` and pasted into standalone
reproducers.  The controller imports them too, so each helper exists once.
"""

from pathlib import Path


def source_path(name: str) -> Path:
    """The file of target module ``name``: loaded by path or pasted, never imported there."""
    return Path(__file__).with_name(f"{name}.py")
