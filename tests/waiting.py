"""The one poll-until helper for tests: things delivered on other threads or processes."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float = 5.0, what: str | Callable[[], str] = "condition",
               interval: float = 0.05) -> T:
    """Returns the first truthy value of `predicate()`; fails naming `what` after `timeout` s.

    `what` may be a callable, to describe the state at the moment of failure (e.g. what arrived)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what() if callable(what) else what}")
        time.sleep(interval)
