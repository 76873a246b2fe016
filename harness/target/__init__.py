"""Code that runs in the interpreter under test.

Standard library only, Python 3.9+, and nothing imported from the rest of greenfuzz:
under ``--python`` this folder is loaded by path as the package ``greenfuzz_target``
(``__main__.py``), and its modules are pasted into standalone reproducers (``paste``).
The controller imports the same modules (``greenfuzz.harness.target.*``), so each helper
exists once.

Rules for a target module, so that both ways work: no ``from __future__`` import and no
annotation newer than 3.9; another target module only as ``from .name import a, b``
(pasting removes that statement: the names are then defined above it); no top-level name
that another pasted module defines too.
"""

import re
from pathlib import Path

#: What a reproducer of a trace pastes, in order (each after what it imports).
RUNTIME = ("codec", "tracediff", "referrers", "stacks", "loader", "errors", "gcmode",
           "side_by_side", "runtime")
#: A raw-memory reproducer or probe: the runtime, then the memory measurements.
MEMORY = (*RUNTIME, "words", "memory", "rawmemory", "memprobe")
#: A program that ends with the interpreter's exit (family ``shutdown``): its script.
EXIT = (*RUNTIME, "words", "protocol", "exit_runtime")
#: The zygote that forks one child per such program (``execution/zygote.py``).
ZYGOTE = (*EXIT, "zygote")
#: A scale reproducer.
SCALE = ("words", "loader", "memory", "scale_random", "scale_runtime")

_SIBLING_IMPORT = re.compile(r"^from \.(\w+) import (?:\([^)]*\)|[^\n(]+)\n", re.MULTILINE)
_DEFINITION = re.compile(r"^(?:def|class) (\w+)|^(\w+)\s*=", re.MULTILINE)


def source_path(name: str) -> Path:
    """The file of target module ``name``: loaded by path or pasted, never imported there."""
    return Path(__file__).with_name(f"{name}.py")


def body(name: str) -> str:
    """Target module ``name`` without its docstring and its imports of sibling modules."""
    text = source_path(name).read_text()
    if text.startswith('"""'):
        text = text.split('"""', 2)[2]
    return _SIBLING_IMPORT.sub("", text).strip("\n") + "\n"


def function_source(name: str, function: str) -> str:
    """The source of top-level function ``function`` of target module ``name``: a plain
    reproducer pastes a check greenfuzz runs too, rather than a copy of it."""
    import ast

    text = source_path(name).read_text()
    for node in ast.parse(text).body:
        if isinstance(node, ast.FunctionDef) and node.name == function:
            segment = ast.get_source_segment(text, node)
            if segment is not None:
                return segment + "\n"
    raise ValueError(f"target module {name} has no top-level function {function}")


def paste(names: tuple = RUNTIME) -> str:
    """The bodies of target modules ``names``, in order, as one block of standalone code.

    ``ValueError`` when a module imports a sibling that is not pasted before it, or when
    two of them define the same top-level name (the later one would replace the other).
    """
    parts = []
    defined: dict = {}
    for name in names:
        text = source_path(name).read_text()
        for sibling in _SIBLING_IMPORT.findall(text):
            if sibling not in names[:names.index(name)]:
                raise ValueError(f"target module {name} imports {sibling}, not pasted before it")
        code = body(name)
        if re.search(r"^from \.", code, re.MULTILINE):
            raise ValueError(f"target module {name} imports a sibling in a form paste cannot"
                             " remove")
        for match in _DEFINITION.finditer(code):
            symbol = match.group(1) or match.group(2)
            if symbol in defined and symbol != "__all__":
                raise ValueError(f"{symbol} is defined by both {defined[symbol]} and {name}")
            defined[symbol] = name
        parts.append(f"# ---- greenfuzz {name} (harness/target/{name}.py) ----\n\n{code}")
    return "\n\n".join(parts)
