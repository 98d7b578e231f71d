"""mace-torch's trainer (``mace.cli.run_train``), run as ``python -m calculators.models.mace_run``
with one fix: fine-tuned models keep the isolated-atom energies they were given.

mace-torch 0.3.16's ``load_foundations_elements`` ends by copying every foundation tensor whose
name and shape match into the new model, the ``atomic_energies`` buffer included. When the
fine-tuning data hold exactly the foundation's elements, the shapes match and the E0s chosen
with ``--E0s`` (``estimated``, or a dict) are silently replaced by the foundation's, though the
log says otherwise (measured: a committee fine-tuned with ``estimated`` and one with
``foundation`` came out identical; docs/design.md). With a subset of the elements the shapes
differ and mace does what it says. Here the buffer is put back after the copy.
"""

from __future__ import annotations

import sys
from typing import Any


def _keep_atomic_energies(load: Any) -> Any:
    def load_keeping_e0s(model: Any, *args: Any, **kwargs: Any) -> Any:
        chosen = model.atomic_energies_fn.atomic_energies.detach().clone()
        out = load(model, *args, **kwargs)
        out.atomic_energies_fn.atomic_energies.copy_(chosen)
        return out

    return load_keeping_e0s


def main() -> None:
    from mace.cli import run_train
    from mace.tools import model_script_utils

    model_script_utils.load_foundations_elements = _keep_atomic_energies(
        model_script_utils.load_foundations_elements
    )
    sys.argv[0] = "mace_run_train"
    run_train.main()


if __name__ == "__main__":
    main()
