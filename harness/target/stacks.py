"""Deep stacks: going one level down through Python or C, and reading the frames.

Standard library only, Python 3.9+; pasted into reproducers with the runtime.
"""

import sys

# A ``Recurse`` op's level functions call the next level through one of these.  Each calls
# ``fn(arg)`` exactly once from inside a C function (or directly, for ``call``), returns
# ``(value, problem)`` where ``problem`` describes a wrong C result (None when right), and
# lets exceptions from ``fn`` propagate.  A greenlet that switches away inside ``fn`` is
# suspended with the C function's frames on its stack, which the implementation must save
# and restore intact.


def via_call(fn, arg):
    return fn(arg), None


def via_sorted(fn, arg):
    box = []

    def sorted_key(x):
        if x is None:
            box.append(fn(arg))
            return 10 ** 9
        return x

    out = sorted([3, None, 1], key=sorted_key)
    return box[0], (None if out == [1, 3, None] else "sorted() returned %r" % (out,))


def via_map(fn, arg):
    box = []

    def map_fn(x):
        if x is None:
            box.append(fn(arg))
            return -1
        return 2 * x

    out = list(map(map_fn, [1, None, 3]))
    return box[0], (None if out == [2, -1, 6] else "map() gave %r" % (out,))


def via_reduce(fn, arg):
    import functools

    box = []

    def reduce_fn(acc, x):
        if x is None:
            box.append(fn(arg))
            x = 100
        return acc + x

    out = functools.reduce(reduce_fn, [1, None, 3], 0)
    return box[0], (None if out == 104 else "reduce() gave %r" % (out,))


def via_sort_cmp(fn, arg):
    import functools

    box = []

    def sort_cmp(a, b):
        if not box:
            box.append(fn(arg))
        return (a > b) - (a < b)

    out = [3, 1, 2]
    out.sort(key=functools.cmp_to_key(sort_cmp))
    return box[0], (None if out == [1, 2, 3] else "list.sort() gave %r" % (out,))


_QSORT = []


def _qsort():
    """libc ``qsort`` and its comparator type, or None without ctypes (e.g. some PyPy
    builds, or no C library to load): ``via_qsort`` then calls its comparator itself."""
    if not _QSORT:
        try:
            import ctypes

            libc = ctypes.CDLL(None) if sys.platform != "win32" else ctypes.cdll.msvcrt
            qsort = libc.qsort
            qsort.restype = None
            cmp_type = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_int),
                                        ctypes.POINTER(ctypes.c_int))
            _QSORT.append((ctypes, qsort, cmp_type))
        except Exception:
            _QSORT.append(None)
    return _QSORT[0]


def via_qsort(fn, arg):
    """Sort seven ints with libc ``qsort`` whose comparator (a ctypes callback) descends
    on its first call.  Exceptions cannot cross the C frames: the comparator keeps the
    first one, and it is raised again once ``qsort`` has returned."""
    data = [5, 2, 8, 1, 9, 3, 7]
    box = []
    failed = []

    def qsort_cmp(pa, pb):
        if not box and not failed:
            try:
                box.append(fn(arg))
            except BaseException as e:
                failed.append(e)
        a, b = pa[0], pb[0]
        return (a > b) - (a < b)

    lib = _qsort()
    if lib is None:
        out = list(data)
        qsort_cmp([out[0]], [out[1]])
        out.sort()
    else:
        ctypes, qsort, cmp_type = lib
        array = (ctypes.c_int * len(data))(*data)
        callback = cmp_type(qsort_cmp)
        qsort(array, len(data), ctypes.sizeof(ctypes.c_int), callback)
        out = list(array)
        if not box and not failed:
            qsort_cmp([0], [0])  # qsort never called back: descend anyway
    if failed:
        error = failed.pop()
        try:
            raise error
        finally:
            error = None
    return box[0], (None if out == sorted(data) else "qsort() gave %r" % (out,))


VIA = {"call": via_call, "sorted": via_sorted, "map": via_map, "reduce": via_reduce,
       "sort_cmp": via_sort_cmp, "qsort": via_qsort}


# -- frames: what a suspended greenlet's stack holds ---------------------------------------

#: The runtime's own functions that a rendered program's stack can hold (the via helpers
#: and their callbacks), besides the program's ``run_*`` and ``recurse_*`` functions.
VIA_FRAMES = {
    "call": (),
    "sorted": ("sorted_key", "via_sorted"),
    "map": ("map_fn", "via_map"),
    "reduce": ("reduce_fn", "via_reduce"),
    "sort_cmp": ("sort_cmp", "via_sort_cmp"),
    "qsort": ("qsort_cmp", "via_qsort"),
}
_PROGRAM_FRAMES = frozenset(name for names in VIA_FRAMES.values() for name in names)


def frame_names(frame, bottom):
    """The names of the program's functions on the ``f_back`` chain from ``frame``,
    innermost first, down to the function named ``bottom`` (None for no frame).

    Frames of other code (an implementation's own ``switch`` written in Python, its
    bootstrap, the harness) are skipped; the walk stops at ``bottom``, the greenlet's
    ``run_<name>``, or at the end of the chain.
    """
    if frame is None:
        return None
    names = []
    while frame is not None:
        name = frame.f_code.co_name
        if name.startswith(("run_", "recurse_")) or name in _PROGRAM_FRAMES:
            names.append(name)
            if name == bottom:
                break
        frame = frame.f_back
    return tuple(names)
