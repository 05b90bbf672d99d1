"""Exceptions callers of the engine catch; torch-free, so that catching them imports no torch."""


class Cancelled(Exception):
    """Raised by `train` when `should_stop()` returns True."""
