"""A Ray address, checked before ``ray.init``: the forms it may take, and whether anything answers there.

Ray-free (the standard library only; an address's form is checked with the config's other fields,
:func:`lsh_tune.search._checks.parse_ray_address`). ``ray.init(address="HOST:PORT")`` where no cluster runs
retries for minutes and fills the terminal with C++ logs; :func:`check_ray_address` tries a TCP
connection to the address's port first and refuses within :data:`CONNECT_TIMEOUT_S` seconds (the
environment variable :data:`TIMEOUT_ENV` changes it) with one
:class:`~lsh_tune.errors.LSHAddressError` naming the address and the timeout. ``lsh-tune search``
calls it in its checks, :func:`~lsh_tune.search.tune.tuner.run_search` (and so ``LSHTuner.fit``) right
before it starts Ray itself.

What is probed: ``HOST:PORT`` — the cluster's GCS port (``ray start --head --port PORT``, 6379 by
default); ``ray://HOST[:PORT]`` — the Ray Client server (:data:`RAY_CLIENT_PORT` by default);
no address — the same for ``RAY_ADDRESS`` when it is set (``ray.init`` reads it then). ``auto``
and ``local`` are left to Ray (``auto`` finds a cluster started on this machine, ``local``
starts one). A port that accepts a connection is only known to be open: a service other than Ray
there still fails in ``ray.init``.
"""
from __future__ import annotations

import math
import os
import socket

from lsh_tune.errors import LSHAddressError, LSHUsageError
from lsh_tune.search._checks import ADDRESS_FORMS, RAY_CLIENT_PORT, parse_ray_address

__all__ = ["ADDRESS_FORMS", "CONNECT_TIMEOUT_S", "RAY_CLIENT_PORT", "TIMEOUT_ENV", "check_ray_address",
           "connect_timeout_s", "parse_ray_address", "resolve_address"]

#: Seconds a TCP connection to the address may take before it counts as no answer. A cluster that
#: runs answers a connect in milliseconds, even across a data centre; 10 s leaves room for a slow
#: network without making a wrong address wait long.
CONNECT_TIMEOUT_S = 10.0
#: Environment variable that replaces :data:`CONNECT_TIMEOUT_S` (seconds, > 0).
TIMEOUT_ENV = "LSH_RAY_CONNECT_TIMEOUT_S"


def connect_timeout_s() -> float:
    """:data:`TIMEOUT_ENV` when set, else :data:`CONNECT_TIMEOUT_S`.

    Raises:
        LSHUsageError: the variable is not a finite number of seconds > 0.
    """
    text = os.environ.get(TIMEOUT_ENV)
    if text is None or not text.strip():
        return CONNECT_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise LSHUsageError(f"{TIMEOUT_ENV}={text!r} is not allowed; give seconds > 0 (default {CONNECT_TIMEOUT_S:g})")
    return value


def check_ray_address(address: str | None, *, timeout_s: float | None = None) -> None:
    """Refuse an address where nothing answers, before ``ray.init`` would retry for minutes.

    ``address`` ``None`` checks ``RAY_ADDRESS`` when it is set (what ``ray.init`` would use);
    ``auto``/``local`` pass unchecked. See the module docstring for what is probed.

    Args:
        timeout_s: seconds for the TCP connect (``None``: :func:`connect_timeout_s`).

    Raises:
        LSHAddressError: no connection within ``timeout_s`` (refused, unreachable, unknown host, or
            no answer); one line naming the address, the timeout and :data:`TIMEOUT_ENV`.
        LSHUsageError: a malformed address, or a bad :data:`TIMEOUT_ENV`.
    """
    what = "address"
    if address is None and os.environ.get("RAY_ADDRESS"):
        what, address = "RAY_ADDRESS", os.environ["RAY_ADDRESS"]
    target = parse_ray_address(address, what)
    if target is None:
        return
    timeout = connect_timeout_s() if timeout_s is None else float(timeout_s)
    host, port = target
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return
    except socket.timeout:
        why = "no answer"
    except socket.gaierror as e:
        why = f"unknown host: {e.strerror or e}"
    except OSError as e:
        why = e.strerror or str(e)
    raise LSHAddressError(
        f"{what}={address!r}: no Ray cluster answers at {host}:{port} ({why}; TCP connect timeout {timeout:g} s, "
        f"set by {TIMEOUT_ENV}); start one there (ray start --head), correct the address, or leave it out for a "
        "local Ray instance")


def resolve_address(address: str | None, running_cluster, environ=None) -> tuple[str, str]:
    """``(the address to start Ray with, one line saying which)`` for ``address``, as ``ray.init()``
    resolves it: a given address is kept; no address is ``RAY_ADDRESS`` when it is set, else the
    cluster ``ray start`` left running on this machine (``running_cluster()``: its ``HOST:PORT`` or
    ``None``, :func:`~lsh_tune.search.tune.tuner.running_cluster_address`), else ``"local"`` (a new
    local instance). ``"local"`` always starts a new one.

    Args:
        running_cluster: no-argument callable, only called when neither ``address`` nor ``RAY_ADDRESS`` is given.
        environ: the environment (``None``: ``os.environ``).
    """
    environ = os.environ if environ is None else environ
    if address == "local":
        return "local", "starting a local Ray instance (--address local)"
    if address is not None:
        return address, f"connecting to the running Ray cluster at {address!r}"
    if environ.get("RAY_ADDRESS"):
        return environ["RAY_ADDRESS"], f"connecting to the running Ray cluster at {environ['RAY_ADDRESS']!r} (RAY_ADDRESS)"
    found = running_cluster()
    if found:
        return found, (f"connecting to the running Ray cluster at {found!r} (started on this machine by `ray start`; "
                       "--address local starts a new local instance instead)")
    return "local", "starting a local Ray instance (no --address, no RAY_ADDRESS, no Ray cluster running here)"
