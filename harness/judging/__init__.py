"""Deciding whether a run was right: event checks, memory checks, documented differences."""
