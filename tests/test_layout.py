"""The layout is a contract: one import root, and imports that flow one way.

The stages of ``harness/`` (see ``harness/__init__.py``) form layers: a module may import
its own stage and the stages below it, never one above.  ``target/`` runs in the
interpreter under test and imports nothing of greenfuzz outside itself.  The check reads
the source with ``ast`` (import-linter cannot see packages mapped from other folders in
an editable install), so it covers imports inside functions too.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import venv
from pathlib import Path
from typing import Iterator, List, Tuple

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: Highest first; names on one line are siblings that must not import each other.
LAYERS: List[Tuple[str, ...]] = [
    ("greenfuzz.__main__",),
    ("greenfuzz.console",),
    ("greenfuzz.harness.cli", "greenfuzz.harness.extra"),
    ("greenfuzz.harness.search",),
    ("greenfuzz.harness.reporting", "greenfuzz.strategies"),
    ("greenfuzz.harness.judging",),
    ("greenfuzz.harness.execution",),
    ("greenfuzz.harness.model",),
    ("greenfuzz.harness.program",),
    ("greenfuzz.harness.families",),
    ("greenfuzz.harness.envs",),
    ("greenfuzz.harness.target",),
]


def _module_files() -> Iterator[Tuple[str, Path]]:
    """(dotted module name, file) for every module of the installed package's source."""
    roots = {"greenfuzz": ROOT / "greenfuzz", "greenfuzz.harness": ROOT / "harness",
             "greenfuzz.strategies": ROOT / "strategies"}
    for prefix, folder in roots.items():
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            if prefix == "greenfuzz" and parts and parts[0] in ("harness", "strategies"):
                continue
            yield ".".join((prefix, *parts)), path


def _type_only(tree: ast.AST) -> set:
    """The import nodes under ``if TYPE_CHECKING:``: annotations only, never run (the
    families type their model rules with the model's classes this way)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            found.update(id(n) for child in node.body for n in ast.walk(child))
    return found


def _imports(name: str, path: Path) -> Iterator[Tuple[int, str]]:
    """(line, imported module) for every import statement that runs, relative ones
    resolved."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(), str(path))
    type_only = _type_only(tree)
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            yield node.lineno, base
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}"


def _layer(module: str) -> Tuple[int, str]:
    for rank, group in enumerate(LAYERS):
        for stage in group:
            if module == stage or module.startswith(stage + "."):
                return rank, stage
    return -1, ""


def violations() -> List[str]:
    found = []
    for name, path in _module_files():
        rank, stage = _layer(name)
        for line, imported in _imports(name, path):
            where = f"{path.relative_to(ROOT)}:{line}"
            top = imported.split(".")[0]
            if top in ("harness", "strategies"):
                found.append(f"{where} imports {imported}: use greenfuzz.{imported}")
                continue
            if top != "greenfuzz" or rank < 0:
                continue
            other_rank, other = _layer(imported)
            if other_rank < 0 or other == stage:
                continue
            if stage == "greenfuzz.harness.target":
                found.append(f"{where}: target code imports {imported}")
            elif other_rank <= rank:
                found.append(f"{where}: {stage} imports {imported} (same or higher layer)")
    return found


def test_every_module_belongs_to_a_stage() -> None:
    names = [name for name, _ in _module_files()]
    assert len(names) > 40
    loose = [n for n in names if _layer(n)[0] < 0
             and n not in ("greenfuzz", "greenfuzz.harness")]
    assert loose == []


def test_imports_flow_one_way() -> None:
    assert violations() == []


def test_the_check_sees_a_violation(tmp_path: Path) -> None:
    """The checker itself: an upward import and a target import are both reported."""
    upward = "from greenfuzz.harness.search import campaign\n"
    name = "greenfuzz.harness.model.bad"
    path = tmp_path / "bad.py"
    path.write_text(upward + "import harness.program.ir\n")
    got = list(_imports(name, path))
    assert (1, "greenfuzz.harness.search") in got
    assert _layer("greenfuzz.harness.search")[0] < _layer(name)[0]
    assert (2, "harness.program.ir") in got


def test_the_check_skips_type_only_imports(tmp_path: Path) -> None:
    """An import under ``if TYPE_CHECKING:`` never runs (the families annotate their
    model rules with the model's classes so): it is not an import of that layer."""
    path = tmp_path / "typed.py"
    path.write_text("from typing import TYPE_CHECKING\n"
                    "if TYPE_CHECKING:\n"
                    "    from greenfuzz.harness.model.core import Model\n"
                    "from greenfuzz.harness.model import predict\n")
    got = [m for _, m in _imports("greenfuzz.harness.families.typed", path)]
    assert "greenfuzz.harness.model.core" not in got
    assert "greenfuzz.harness.model" in got


def _venv_python(where: Path) -> Path:
    venv.EnvBuilder(with_pip=False).create(where)
    return where / "bin" / "python"


@pytest.mark.slow
def test_wheel_has_one_root_and_coexists_with_user_modules(tmp_path: Path) -> None:
    """Installed from the wheel beside a project with its own ``strategies.py`` and
    ``harness.py`` (a common Hypothesis idiom), both greenfuzz and the user's modules
    import, and ``python -m greenfuzz`` runs."""
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels),
                    str(ROOT)], check=True, timeout=300, capture_output=True)
    (wheel,) = wheels.glob("greenfuzz-*.whl")
    python = _venv_python(tmp_path / "env")
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()"
                           "['purelib'])"], capture_output=True, text=True, check=True,
                          timeout=60).stdout.strip()
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                    site, str(wheel)], check=True, timeout=300, capture_output=True)
    tops = sorted(p.name for p in Path(site).iterdir()
                  if not p.name.endswith((".dist-info", "__pycache__")) and p.name != "bin")
    assert tops == ["greenfuzz"]
    project = tmp_path / "project"
    project.mkdir()
    (project / "strategies.py").write_text("MINE = 'user strategies'\n")
    (project / "harness.py").write_text("MINE = 'user harness'\n")
    # The dependencies come from this interpreter's environment, after the fresh site.
    deps = [p for p in sys.path if p.endswith("site-packages")]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(deps))
    check = ("import strategies, harness, greenfuzz.strategies, greenfuzz.harness.search.campaign\n"
             "assert strategies.MINE == 'user strategies' and harness.MINE == 'user harness'\n"
             "from greenfuzz.strategies import programs\n"
             "import greenfuzz.harness.search.campaign as c\n"
             "assert c.__file__.startswith(%r), c.__file__\n" % site)
    done = subprocess.run([str(python), "-c", check], cwd=project, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    version = subprocess.run([str(python), "-m", "greenfuzz", "impls"], cwd=project, env=env,
                             capture_output=True, text=True, timeout=120)
    assert version.returncode == 0, version.stderr
    assert "greenlet" in version.stdout
