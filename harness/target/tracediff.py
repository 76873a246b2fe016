"""Comparing two traces: where they first differ, with the one order greenlet leaves open.

Standard library only, Python 3.9+; pasted into reproducers with the runtime.
"""

from .codec import ExcValue


def _is_collection_death(event):
    kind, payload = event[2], event[3]
    return kind == "died" and isinstance(payload, ExcValue) and payload.args is None \
        and payload.type == "GreenletExit"


def _same(want, got):
    """Events agree; an ``alive`` event of None (the implementation's greenlets cannot
    be weakly referenced) agrees with any prediction."""
    if tuple(want) == tuple(got):
        return True
    return want[2] == got[2] == "alive" and got[3] is None and want[:2] == got[:2]


def first_divergence(expected, observed):
    """Index of the first event that differs, or None when the traces agree.

    One relaxation: when dropping a reference frees several suspended greenlets at
    once, the order in which they receive GreenletExit depends on when the
    implementation's frames let go of their references (a switch() written in Python
    holds its greenlet until the traceback dies), which greenlet does not document.
    Within a run of consecutive predicted collection deaths, any order agrees.

    An ``undecided`` event in ``expected`` ends the comparison there: the program reached
    a state greenlet's documentation gives no outcome for (the model's ``Undecided``), so
    whatever a completed run does afterwards agrees.
    """
    for at, event in enumerate(expected):
        if event[2] == "undecided":
            expected, observed = expected[:at], observed[:at]
            break
    i = 0
    while i < len(expected) and i < len(observed):
        if _is_collection_death(expected[i]):
            j = i
            while j < len(expected) and _is_collection_death(expected[j]):
                j += 1
            window = list(observed[i:j])
            for k in range(i, j):
                match = next((w for w in window if tuple(w) == tuple(expected[k])), None)
                if match is None:
                    return i
                window.remove(match)
            i = j
            continue
        if not _same(expected[i], observed[i]):
            return i
        i += 1
    if len(expected) != len(observed):
        return min(len(expected), len(observed))
    return None
