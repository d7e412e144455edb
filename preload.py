"""Import the libraries that only the ranking and the report need, in the background, while a core is free.

scipy.stats (for the Benjamini-Hochberg q-values) and matplotlib take ~1.3 s
of CPU to import, and a process's first figure takes ~0.2 s longer than the
next (fonts, caches). Done when first needed, at the end of the run, that is
time during which one process works and the other cores wait; done while the
workers train, it takes their CPU. The sweep starts them on a background
thread once its own setup is done, while the workers' parent process is
still importing torch (worker.warm_up) and this process would otherwise only
wait for it. Mid-run rankings wait until they are loaded rather than block
the loop that feeds the workers.
"""
from __future__ import annotations

import gc
import threading

_done = threading.Event()
_started = threading.Lock()
_thread: threading.Thread | None = None
_freeze_when_done = False


def defer_garbage_collection() -> None:
    """No garbage collection until the background imports are done; then everything loaded so far is frozen.

    For search.py's command line, whose process up to then is all start-up:
    the objects that imports create live as long as the process, so collecting
    while they load frees nothing. It cost 0.25-0.4 s of CPU per sweep, most of it
    two full collections during the imports here, while the workers train.
    gc.freeze() then keeps later collections from walking them again. Not for
    a process that goes on to other work (tests run sweeps in-process):
    whatever is garbage at the moment of freezing is never freed.
    """
    global _freeze_when_done
    gc.disable()
    _freeze_when_done = True


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


def wait() -> None:
    """Until the imports and the warm-up figure are done (before drawing: figures are not shared across threads)."""
    if _thread is not None:
        _thread.join()


def _import_all() -> None:
    try:
        import scipy.stats  # noqa: F401
        _draw_a_figure()
    except Exception:  # noqa: BLE001 - whoever needs them imports them again and reports the error
        pass
    finally:
        if _freeze_when_done:
            gc.freeze()
            gc.enable()
        _done.set()


def _draw_a_figure() -> None:
    """The first figure of a process costs ~0.2 s more than later ones (fonts, caches): pay it here."""
    import io
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(2, 2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    points = ax.scatter([1, 2], [1, 2], c=[1, 2])
    fig.colorbar(points, ax=ax, label="warm-up")
    ax.set_title("warm-up")
    fig.savefig(io.BytesIO(), format="png")
