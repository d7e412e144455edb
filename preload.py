"""Import the libraries that only the ranking and the report need, in the background, once a core is free.

scipy.stats (for the Benjamini-Hochberg q-values) and matplotlib take ~1.5 s
of CPU to import. Imported when first needed, at the end of the run, that
is 1.5 s during which one process works and the other cores wait. The sweep
instead starts them on a background thread once the last work is claimed
(while the workers train, where they cost about half that in wall time on
a busy machine, and nothing on one with a free core), or once the sweep
has run long enough that mid-run rankings are worth the cost. The main
thread mostly waits on the workers' results, so it loses nothing to it.
"""
from __future__ import annotations

import threading

_done = threading.Event()
_started = threading.Lock()
_thread: threading.Thread | None = None


def start() -> None:
    """Begin the imports (once; later calls do nothing)."""
    global _thread
    with _started:
        if _thread is None:
            _thread = threading.Thread(target=_import_all, name="preload", daemon=True)
            _thread.start()


def ready() -> bool:
    """Whether the imports have finished (ranking now costs no import)."""
    return _done.is_set()


def _import_all() -> None:
    try:
        import scipy.stats  # noqa: F401
        import matplotlib.backends.backend_agg  # noqa: F401
        import matplotlib.figure  # noqa: F401
    except Exception:  # noqa: BLE001 - whoever needs them imports them again and reports the error
        pass
    finally:
        _done.set()
