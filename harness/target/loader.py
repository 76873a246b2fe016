"""Loading an implementation, and compiling programs once.

Used by the worker, the scale runtime and the controller alike, and pasted into
reproducers: standard library only, Python 3.9+.
"""

import functools
import importlib
import importlib.util
import os
import sys

#: Names every implementation must have; programs cannot run without them.
REQUIRED = ("greenlet", "getcurrent", "GreenletExit", "error")
#: Names some implementations have; checks that need them are skipped without them.
OPTIONAL = ("settrace", "gettrace")


def one_line(text):
    return " ".join(str(text).split())


def load_implementation(spec):
    """Import an implementation by module name or from a ``.py`` file path."""
    if spec.endswith(".py") or os.sep in spec:
        path = os.path.abspath(spec)
        name = "greenfuzz_impl_" + os.path.splitext(os.path.basename(path))[0]
        loader_spec = importlib.util.spec_from_file_location(name, path)
        if loader_spec is None or loader_spec.loader is None:
            raise ImportError("cannot load %s" % path)
        module = importlib.util.module_from_spec(loader_spec)
        sys.modules[name] = module
        loader_spec.loader.exec_module(module)
        return module
    return importlib.import_module(spec)


def api_problem(spec, module):
    """Why ``module`` cannot serve as an implementation (one line), or None."""
    missing = [name for name in REQUIRED if not hasattr(module, name)]
    if missing:
        return "implementation %r lacks the greenlet API: missing %s" % (
            spec, ", ".join(missing))
    exit_type = module.GreenletExit
    if not (isinstance(exit_type, type) and issubclass(exit_type, BaseException)):
        return "implementation %r: GreenletExit is not an exception" % (spec,)
    return None


def load_checked(spec):
    """(module, None), or (None, a one-line reason) when ``spec`` cannot be imported or
    lacks the API.  An implementation that raises ``SystemExit`` while it is imported
    failed to import; ``KeyboardInterrupt`` still stops the caller."""
    if spec.endswith(".py") and not os.path.exists(spec):
        return None, "implementation file not found: %s" % spec
    try:
        module = load_implementation(spec)
    except ModuleNotFoundError as e:
        return None, "cannot import implementation %r: %s" % (spec, one_line(e))
    except (Exception, SystemExit) as e:  # the module itself failed to import
        return None, "implementation %r failed to import: %s: %s" % (
            spec, type(e).__name__, one_line(e))
    problem = api_problem(spec, module)
    return (None, problem) if problem else (module, None)


@functools.lru_cache(maxsize=256)
def compiled(source):
    """The code of a rendered program's source, compiled once per source text
    (Hypothesis replays the same program several times while it shrinks)."""
    return compile(source, "<greenfuzz program>", "exec")
