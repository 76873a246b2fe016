"""What refers to a greenlet that outlived the program's reference to it.

Used by ``Tracer.check_alive`` when a leak is explained (``gc.get_referrers`` scans every
object the collector tracks: costly).  Standard library only, Python 3.9+.
"""

import gc
import sys


def holders(g, T, limit=6):
    """What refers to greenlet ``g``: one line per referrer (``gc.get_referrers``), with
    the module attribute, greenlet or frame behind a container where one is found, and
    how many references no object ``gc`` tracks accounts for (C code, suspended frames).
    """
    mine = sys._getframe()
    # This frame and check_alive's hold ``g`` as a local; so does getrefcount's argument.
    skip = {id(mine), id(mine.f_back), id(T.weak), id(T.registry)}
    mine = None
    refs = [r for r in gc.get_referrers(g) if id(r) not in skip]
    lines = []
    for r in refs[:limit]:
        lines.append(_describe_referrer(r, g, T, skip | {id(refs)}))
    if len(refs) > limit:
        lines.append("... and %d more referrers" % (len(refs) - limit))
    # getrefcount's own argument, the ``g`` of our caller and this frame's ``g``.
    untracked = sys.getrefcount(g) - 3 - len(refs)
    if untracked > 0:
        lines.append("%d reference(s) from objects gc does not track (C code, a "
                     "suspended frame's stack, a pending switch)" % untracked)
    refs = None
    return tuple(lines)


def _describe_referrer(r, g, T, skip):
    """One referrer of ``g``, with what holds it in turn when that says more."""
    if T.labels.get(id(r)) is not None and hasattr(r, "switch"):
        if getattr(r, "parent", None) is g:
            return "greenlet %s (its parent)" % T.label(r)
        return "greenlet %s" % T.label(r)
    what = type(r).__name__
    if isinstance(r, (list, tuple, set, dict)):
        what = "%s of %d item(s)" % (what, len(r))
        owner = _module_attribute(r, skip)
        if owner:
            what += ", " + owner
    elif type(r).__name__ == "frame":
        what = "frame of %s (%s:%s)" % (r.f_code.co_name, r.f_code.co_filename, r.f_lineno)
    elif type(r).__name__ == "method":
        what = "bound method %s" % getattr(r, "__name__", "?")
    return what


def _module_attribute(container, skip):
    """``module M attribute A`` (or ``class C attribute A``) for a container that a
    module or class holds directly, else ''."""
    for r in gc.get_referrers(container):
        if id(r) in skip or not isinstance(r, dict):
            continue
        for key, value in r.items():
            if value is container:
                for m in list(sys.modules.values()):
                    if getattr(m, "__dict__", None) is r:
                        return "module %s attribute %s" % (m.__name__, key)
                return "dict key %r" % (key,)
    return ""
