"""The exception type user-facing code raises for bad input, and the shared validators.

Ground floor: imports nothing from ``lsh_tune`` (every layer may use it).
"""
from __future__ import annotations

import math

__all__ = ["LSHAddressError", "LSHStorageError", "LSHTypeError", "LSHUsageError", "check_bool", "check_choice",
           "check_int", "check_name", "check_range"]


class LSHUsageError(ValueError):
    """Bad user input: the message names the value and what is allowed.

    The command line turns it into a one-line error and exit code 2.
    """


class LSHTypeError(LSHUsageError, TypeError):
    """Bad user input of the wrong type (an ``LSHUsageError`` that is also a ``TypeError``)."""


class LSHAddressError(LSHUsageError):
    """A Ray address where no cluster answers (checked before ``ray.init``,
    :func:`lsh_tune.search.run.ray_address.check_ray_address`): one line naming the address and the
    timeout, exit code 2 on the command line, instead of minutes of Ray's retries."""


class LSHStorageError(OSError):
    """A state file could not be written (full disk, unwritable or vanished storage).

    The message names the file; the previous version of it is intact (every state file is
    written to a temporary file and renamed), so the same command with ``--resume`` continues
    once the storage is writable again. The command line prints one line and exits with code 1.
    """


def check_int(name: str, value: object, low: int, *, allow_none: bool = False) -> None:
    """Raise unless ``value`` is an integer (``bool`` excluded) and ``value >= low``.

    Raises:
        LSHTypeError: ``value`` is not an integer.
        LSHUsageError: ``value < low``.
    """
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) and not _is_numpy_int(value):
        raise LSHTypeError(f"{name}={value!r} must be an integer >= {low}")
    if value < low:
        raise LSHUsageError(f"{name}={value!r} is out of range; allowed: integers >= {low}")


def _is_numpy_int(value: object) -> bool:
    """``value`` is a NumPy integer scalar (checked without importing NumPy)."""
    return type(value).__module__ == "numpy" and hasattr(value, "__index__") and hasattr(value, "dtype") \
        and getattr(value.dtype, "kind", "") in "iu"


def check_choice(name: str, value: object, allowed: "list[str] | tuple[str, ...]") -> None:
    """Raise LSHUsageError unless ``value`` is one of ``allowed``."""
    if value not in allowed:
        raise LSHUsageError(
            f"{name}={value!r} is not allowed; choose one of: {', '.join(map(str, allowed))}"
        )


def check_range(name: str, value: float, low: float | None = None, high: float | None = None,
                *, low_open: bool = False, high_open: bool = False) -> None:
    """Raise LSHUsageError unless ``value`` is a finite number with ``low <= value <= high`` (open ends
    if asked). NaN and ±inf are always refused; so are ``bool`` and strings."""
    if isinstance(value, (bool, str, bytes)):
        raise LSHTypeError(f"{name}={value!r} is not a number")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise LSHTypeError(f"{name}={value!r} is not a number") from None
    finite = math.isfinite(v)
    bad = not finite
    if low is not None:
        bad |= v <= low if low_open else v < low
    if high is not None:
        bad |= v >= high if high_open else v > high
    if bad:
        lo = "-inf" if low is None else f"{low}"
        hi = "inf" if high is None else f"{high}"
        lb = "(" if (low_open or low is None) else "["
        hb = ")" if (high_open or high is None) else "]"
        what = "is out of range" if finite else "is not a finite number"
        raise LSHUsageError(f"{name}={value!r} {what}; allowed: {lb}{lo}, {hi}{hb}")


def check_bool(name: str, value: object) -> None:
    """Raise LSHTypeError unless ``value`` is ``True`` or ``False``."""
    if not isinstance(value, bool):
        raise LSHTypeError(f"{name}={value!r} must be true or false")


def check_name(name: str, value: object) -> None:
    """Raise LSHUsageError unless ``value`` is one directory name that stays where it is put.

    Refused: a non-string, ``""``, ``.``, ``..``, a name holding ``/``, ``\\`` or a NUL byte
    (each would escape the storage path or name another directory).
    """
    if not isinstance(value, str) or value in ("", ".", "..") or any(c in value for c in "/\\\0"):
        raise LSHUsageError(f"{name}={value!r} must be a single directory name: not empty, '.' or '..', and "
                            "without '/', '\\' or NUL (names may not escape the storage path)")
