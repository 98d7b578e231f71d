"""What the parallel train stage relies on: no thread leaves the process's stdout redirected."""

from __future__ import annotations

import sys
import threading
import time

from calculators.models.mace_train import quiet_mace_import


def test_overlapping_quiet_imports_restore_stdout() -> None:
    """Unlocked, thread B saves thread A's sink as "the" stdout and restores it last, so every
    later print is lost; this overlaps eight of them."""
    before = sys.stdout
    start = threading.Barrier(8)

    def quiet() -> None:
        start.wait()
        with quiet_mace_import():
            time.sleep(0.01)

    threads = [threading.Thread(target=quiet) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sys.stdout is before
