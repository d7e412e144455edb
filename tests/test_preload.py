"""preload.py: the report's libraries load in the background; search.py's process collects no garbage until they have."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_SCRIPT = """
import gc, json, sys, preload
if sys.argv[1] == "defer":
    preload.defer_garbage_collection()
during = gc.isenabled()
preload.start()
preload.wait()
print(json.dumps({"during": during, "after": gc.isenabled(), "frozen": gc.get_freeze_count(),
                  "loaded": "scipy.stats" in sys.modules and "matplotlib" in sys.modules}))
"""


def _run(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", _SCRIPT, mode], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.splitlines()[-1])


def test_deferred_collection_resumes_with_the_imports_frozen():
    seen = _run("defer")
    assert seen["loaded"]
    assert seen["during"] is False        # no collections while the long-lived objects load
    assert seen["after"] is True          # collecting again once they have
    assert seen["frozen"] > 50_000        # scipy.stats and matplotlib out of the collector's sight


def test_without_deferral_the_collector_is_left_alone():
    seen = _run("plain")
    assert seen["loaded"]
    assert seen["during"] is True and seen["after"] is True
    assert seen["frozen"] == 0


def test_search_main_called_in_process_leaves_the_collector_alone(tmp_path):
    """Deferral is for search.py's own process only: tests and other callers of main() keep collecting."""
    import gc

    import search
    frozen = gc.get_freeze_count()
    assert search.main(["--config", str(tmp_path / "missing.py")]) == 2
    assert gc.isenabled()
    assert gc.get_freeze_count() == frozen
