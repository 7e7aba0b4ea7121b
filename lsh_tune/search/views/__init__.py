"""What a person sees of a search (Ray-free), all from the search's results and its experiment's files.

* :mod:`.events` — the events and ``events.jsonl``; :mod:`.progress` — trial results and decided
  rounds → events, ETA; :mod:`.console` — the live view; :mod:`.session` — the driver's side of
  one run (events, live view, TensorBoard thread, closing report);
* :mod:`.history` — an experiment read back; :mod:`.epochs` (its trained epochs as data),
  :mod:`.report` (``lsh-tune report``), :mod:`.figures`, :mod:`.tensorboard` drawn from it.

Nothing is imported here: import the modules.
"""
