"""FireWorks' ``rlaunch`` with :mod:`launchers.fireworks_compat` applied.

Same arguments as ``rlaunch``: ``python -m launchers.rlaunch -l my_launchpad.yaml -w
my_fworker.yaml rapidfire``. Use it instead of plain ``rlaunch`` with the embedded server.
"""

from fireworks.scripts.rlaunch_run import rlaunch

from launchers.fireworks_compat import patch

if __name__ == "__main__":
    patch()
    rlaunch()
