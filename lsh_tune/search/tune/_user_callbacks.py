"""Your own Tune callbacks in a search (``LSHTuner(..., callbacks=[...])``): given to each run, fresh or restored.

Tune pickles ``RunConfig(callbacks=...)`` into the experiment's ``tuner.pkl`` when the Tuner is
built, and ``Tuner.restore`` calls the callbacks unpickled from there; Ray 2.60 has no public way
to give a restored Tuner other callbacks. So the search hands Tune one :class:`RunCallbacks`
holding yours: it calls each of yours on every hook of :class:`ray.tune.Callback`, in order, and
pickles as a reference to the callbacks of the run being set up in this thread
(:func:`run_callbacks`), never as the callbacks themselves. Hence:

* a run calls exactly the callbacks it was given, and they need not pickle;
* a restored run calls the callbacks given to the restore (``LSHTuner.restore(path, callbacks=[...])``,
  ``run_search(..., callbacks=...)``), none if none were given: the first run's do not come back;
* their state does, the way Tune keeps any callback's: Tune saves ``get_state()`` with the
  experiment and passes it to ``set_state()`` when the run is restored, by position, so the i-th
  callback given to the restore receives what the i-th callback of the run before returned.

A search whose ``tuner.pkl`` was written before this forwarding existed restores without a
:class:`RunCallbacks`: its run calls none of the callbacks given (:attr:`RunCallbacks.attached`
tells; :func:`~lsh_tune.search.tune.tuner.run_search` warns).
"""
from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from ray.tune import Callback

from lsh_tune.errors import LSHUsageError

__all__ = ["RunCallbacks", "check_callbacks", "run_callbacks"]

_THIS_RUN = threading.local()


def check_callbacks(callbacks: Iterable[Callback] | None) -> tuple[Callback, ...]:
    """``callbacks`` as a tuple (``None``: none).

    Raises:
        LSHUsageError: ``callbacks`` is not a list (or tuple) of :class:`ray.tune.Callback` instances,
            naming the first value that is not one.
    """
    if callbacks is None:
        return ()
    if isinstance(callbacks, (Callback, str, bytes, dict)) or not isinstance(callbacks, Iterable):
        raise LSHUsageError(f"callbacks={callbacks!r} is not a list; give a list of ray.tune.Callback instances, "
                            "e.g. callbacks=[MLflowLoggerCallback(...)]")
    callbacks = tuple(callbacks)
    for i, cb in enumerate(callbacks):
        if not isinstance(cb, Callback):
            kind = "a class, not an instance" if isinstance(cb, type) else f"of type {type(cb).__name__}"
            raise LSHUsageError(f"callbacks[{i}]={cb!r} is {kind}; each callback must be an instance of a "
                                "ray.tune.Callback subclass")
    return callbacks


class RunCallbacks(Callback):
    """The user's callbacks of one run, as one Tune callback (see the module docstring).

    Args:
        callbacks: called in this order on every hook.
    """

    #: Ray's own check (that of ``ray.tune.callback.CallbackList``): a hook of ``Callback`` that this
    #: class does not forward is a ``TypeError`` when the module is imported, not a silent gap.
    IS_CALLBACK_CONTAINER = True

    def __init__(self, callbacks: Iterable[Callback] = ()) -> None:
        self.callbacks = tuple(callbacks)
        #: Whether Tune set this run up with it (``setup`` was called).
        self.attached = False

    def __reduce__(self):
        return (_this_run, ())

    def __copy__(self) -> "RunCallbacks":
        return self

    def __deepcopy__(self, memo) -> "RunCallbacks":
        return self

    def _each(self, hook: str, info: dict) -> None:
        for cb in self.callbacks:
            getattr(cb, hook)(**info)

    def setup(self, **info) -> None:
        self.attached = True
        self._each("setup", info)

    def on_step_begin(self, **info) -> None:
        self._each("on_step_begin", info)

    def on_step_end(self, **info) -> None:
        self._each("on_step_end", info)

    def on_trial_start(self, **info) -> None:
        self._each("on_trial_start", info)

    def on_trial_restore(self, **info) -> None:
        self._each("on_trial_restore", info)

    def on_trial_save(self, **info) -> None:
        self._each("on_trial_save", info)

    def on_trial_result(self, **info) -> None:
        self._each("on_trial_result", info)

    def on_trial_complete(self, **info) -> None:
        self._each("on_trial_complete", info)

    def on_trial_recover(self, **info) -> None:
        self._each("on_trial_recover", info)

    def on_trial_error(self, **info) -> None:
        self._each("on_trial_error", info)

    def on_checkpoint(self, **info) -> None:
        self._each("on_checkpoint", info)

    def on_experiment_end(self, **info) -> None:
        self._each("on_experiment_end", info)

    def get_state(self) -> dict | None:
        """``{i: state}`` of the callbacks that have one (Tune saves it with the experiment); ``None`` if none has."""
        states = {i: cb.get_state() for i, cb in enumerate(self.callbacks)}
        return states if any(states.values()) else None

    def set_state(self, state: dict) -> None:
        """Each saved state to the callback at its position (a restored run's callbacks)."""
        for i, cb in enumerate(self.callbacks):
            if state.get(i):
                cb.set_state(state[i])


def _this_run() -> RunCallbacks:
    """What a pickled :class:`RunCallbacks` becomes: the one of the run being set up in this thread,
    else one calling nothing (Tune's snapshot read outside a search)."""
    current = getattr(_THIS_RUN, "callbacks", None)
    return RunCallbacks() if current is None else current


@contextmanager
def run_callbacks(callbacks: Iterable[Callback] | None) -> Iterator[RunCallbacks]:
    """The :class:`RunCallbacks` of the run inside this block, which a pickled one in this thread becomes.

    Raises:
        LSHUsageError: ``callbacks`` is not a list of callbacks (:func:`check_callbacks`).
    """
    before = getattr(_THIS_RUN, "callbacks", None)
    _THIS_RUN.callbacks = RunCallbacks(check_callbacks(callbacks))
    try:
        yield _THIS_RUN.callbacks
    finally:
        _THIS_RUN.callbacks = before
