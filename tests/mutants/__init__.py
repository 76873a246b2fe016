"""Deliberately broken greenlet implementations: the harness must catch every one.

Each module wraps the real greenlet with exactly one defect and says, in ``KIND``, the
kind of finding it must produce (and, in ``FAMILY``, what part of the semantics it
breaks).  ``tests/test_mutants.py`` fuzzes each and fails if the harness misses it.
"""
