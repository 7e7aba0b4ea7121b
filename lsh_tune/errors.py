"""The one exception type that user-facing code raises for bad input."""
from __future__ import annotations

__all__ = ["LSHUsageError", "check_choice", "check_range"]


class LSHUsageError(ValueError):
    """Bad user input: the message names the value and what is allowed.

    The command line turns it into a one-line error and exit code 2.
    """


def check_choice(name: str, value: object, allowed: "list[str] | tuple[str, ...]") -> None:
    """Raise LSHUsageError unless ``value`` is one of ``allowed``."""
    if value not in allowed:
        raise LSHUsageError(
            f"{name}={value!r} is not allowed; choose one of: {', '.join(map(str, allowed))}"
        )


def check_range(name: str, value: float, low: float | None = None, high: float | None = None,
                *, low_open: bool = False, high_open: bool = False) -> None:
    """Raise LSHUsageError unless ``low <= value <= high`` (open ends if asked)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise LSHUsageError(f"{name}={value!r} is not a number") from None
    bad = v != v  # NaN
    if low is not None:
        bad |= v <= low if low_open else v < low
    if high is not None:
        bad |= v >= high if high_open else v > high
    if bad:
        lo = "-inf" if low is None else f"{low}"
        hi = "inf" if high is None else f"{high}"
        lb = "(" if (low_open or low is None) else "["
        hb = ")" if (high_open or high is None) else "]"
        raise LSHUsageError(f"{name}={value!r} is out of range; allowed: {lb}{lo}, {hi}{hb}")
