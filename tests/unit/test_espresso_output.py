"""Classification of pw.x outputs that the integration tests cannot provoke on demand."""

from __future__ import annotations

import pytest

from calculators.oracles.espresso_output import classify


@pytest.mark.parametrize(
    ("text", "code", "status"),
    [
        (None, None, "input_error"),
        ("", -9, "killed"),
        ("", 3, "crashed"),
        (" Error in routine cdiaghg (21):\n  S matrix not positive definite\n", 1, "crashed"),
        (" Error in routine iosys (1):\n  ecutrho < ecutwfc\n", 1, "input_error"),
        ("     JOB DONE.\n", 0, "crashed"),  # no total energy
        ("!    total energy              =     -87.1 Ry\n", 0, "killed"),  # no JOB DONE
    ],
)
def test_classification_of_outputs(text: str | None, code: int | None, status: str) -> None:
    assert classify(text, code)[0] == status
