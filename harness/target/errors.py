"""The exceptions programs and the runtime raise, shared by the runtime's modules.

Standard library only, Python 3.9+; pasted into reproducers with the runtime.
"""


class FuzzError(Exception):
    """The programs' own exception type, so that nothing else is mistaken for it."""


class Unbound(Exception):
    """A script named a greenlet the registry does not hold (not spawned yet, or dropped)."""


class RunawayProgram(BaseException):
    """The implementation produced far more events than any program can."""
