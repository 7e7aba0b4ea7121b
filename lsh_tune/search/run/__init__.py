"""The Ray-free parts of one run of a search, above the core and below the views and the Ray adapters.

* :mod:`.preflight` — what is checked before Ray starts and before anything is written (storage,
  experiment directory, corpus, reference checkpoint, whether the compute suffices);
* :mod:`.cost` — the cost model: how long a search and its dense reference take;
* :mod:`.reference` — the corpus every trial shares and the dense reference (its plan, its
  resumable training, its cache; one trainer at a time per key through :mod:`._lease`);
* :mod:`.outputs` — what a finished search leaves (results, ``best.json``, ``best_model.pt``).

Nothing is imported here: import the modules.
"""
