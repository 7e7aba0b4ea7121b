"""What a trial's worker prints when Tune stops it (``lsh_tune.search.tune.ray_output``)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: A SystemExit raised where Python cannot raise it (a __del__, as Ray's SIGTERM handler does inside a
#: weakref callback during garbage collection), then a ValueError the same way; argv[1] = "quiet" installs
#: the trial workers' hook first.
_LOST_EXITS = """
import sys
if sys.argv[1] == "quiet":
    from lsh_tune.search.tune.ray_output import quiet_sigterm_in_gc
    quiet_sigterm_in_gc()
class Exits:
    def __del__(self):
        raise SystemExit(1)
class Fails:
    def __del__(self):
        raise ValueError("a real error")
Exits(); Fails()
print("alive")
"""


def test_a_sigterm_exit_lost_in_gc_prints_nothing_in_a_trial_worker_and_other_errors_still_print():
    """The 8-line "Exception ignored ... SystemExit: 1" traceback of a worker stopped by Tune (seen in the
    demo's output) is dropped; an unraisable error of another kind still prints; the process goes on
    exactly as without the hook (Python drops both either way)."""
    runs = {mode: subprocess.run([sys.executable, "-c", _LOST_EXITS, mode], capture_output=True, text=True,
                                 cwd=REPO, timeout=60) for mode in ("plain", "quiet")}
    for run in runs.values():
        assert run.returncode == 0 and run.stdout == "alive\n"
        assert "ValueError: a real error" in run.stderr
    assert "SystemExit: 1" in runs["plain"].stderr                 # what a user saw before
    assert "SystemExit" not in runs["quiet"].stderr
    assert runs["quiet"].stderr.count("Exception ignored") == 1
