"""Starting target code in the interpreter under test.

The controller runs ``python /path/to/harness/target/__main__.py COMMAND ARGS...`` under
``--python``, where greenfuzz need not be installed: this file loads its own folder by
path as the package ``greenfuzz_target`` (a name no implementation uses, so nothing it
imports is shadowed) and runs one command of it:

* ``worker --impl SPEC [--no-fork]``: serve programs (``worker.py``);
* ``scale IMPL RECIPE_JSON``: one scale recipe (``scale_runtime.py``);
* ``parked JOB_JSON``: bytes per parked greenlet, one JSON line (``greenfuzz profile``).
"""

import importlib
import importlib.util
import json
import os
import sys


def package():
    """This folder as a package: ``greenfuzz.harness.target`` where greenfuzz imported it,
    else ``greenfuzz_target``, loaded by path."""
    if __package__:
        return __package__
    here = os.path.dirname(os.path.abspath(__file__))
    # This folder is sys.path[0]: resolve module names from the working directory
    # instead, as ``python -m`` and the in-process harness do, and never from here.
    if sys.path and os.path.abspath(sys.path[0] or ".") == here:
        sys.path[0] = ""
    name = "greenfuzz_target"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, os.path.join(here, "__init__.py"), submodule_search_locations=[here])
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return name


def parked(argv):
    """``measure_parked`` for one job (JSON: impl, counts, depth, via, metric); prints the
    fit as one JSON line."""
    job = json.loads(argv[0])
    loader = importlib.import_module(package() + ".loader")
    rawmemory = importlib.import_module(package() + ".rawmemory")
    gl, problem = loader.load_checked(job["impl"])
    if gl is None:
        sys.stderr.write(problem + "\n")
        return 2
    fit = rawmemory.measure_parked(gl, job["counts"], depth=job["depth"], via=job["via"],
                                   metric=job["metric"])
    version = getattr(gl, "__version__", None)
    print(json.dumps({
        "slope": fit.slope, "intercept": fit.intercept, "counts": list(fit.counts),
        "deltas": list(fit.deltas), "residuals": list(fit.residuals), "metric": fit.metric,
        "reliable": fit.reliable, "reason": fit.reason, "exits": fit.exits,
        "parked": fit.parked, "per_greenlet": list(fit.per_greenlet),
        "impl_version": version if isinstance(version, str) else None,
        "python_version": "%s %s" % (sys.implementation.name, sys.version.split()[0]),
    }))
    return 0


def main(argv):
    commands = {"worker": "worker", "scale": "scale_runtime"}
    if not argv or argv[0] not in (*commands, "parked"):
        sys.stderr.write("usage: __main__.py {worker,scale,parked} ARGS...\n")
        return 2
    if argv[0] == "parked":
        return parked(argv[1:])
    return importlib.import_module(package() + "." + commands[argv[0]]).main(argv[1:])


if __name__ == "__main__":
    flush_std = importlib.import_module(package() + ".protocol").flush_std
    flush_std()
    status = main(sys.argv[1:])
    flush_std()
    # Without interpreter shutdown: an implementation's threads or atexit hooks, or
    # millions of greenlets left to free, must not decide how (or whether) this ends.
    os._exit(status)
