"""The search on Ray Tune: every module of ``lsh_tune.search`` that imports Ray lives here.

* :mod:`.adapters` — :class:`LSHScheduler` and :class:`LSHSearcher` (translate between Tune and the ledger);
* :mod:`.trainable` — the built-in candidate trainable (and the dense reference's trial);
* :mod:`.loggers` — Tune's JSON/CSV result loggers without lost rows; :mod:`._events_callback` — the
  callback that turns results into search events; :mod:`.ray_output` — what Ray prints per ``--verbose``;
* :mod:`.tuner` — :func:`run_search`, the Tuner fresh or restored.

Nothing is imported here (``import lsh_tune.search.tune`` does not import Ray); the public names are
also ``lsh_tune.search.LSHScheduler``, ``LSHSearcher``, ``candidate_trainable``, ``run_search``,
``result_logger_callbacks``.
"""
