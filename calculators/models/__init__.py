"""Machine-learned models: the MACE committee, MACE training, the stand-in foundation.

Every model is a :class:`ModelCalculator` and passes :func:`validate_model`.
"""

from calculators.models.interface import MODEL_PROPERTIES, ModelCalculator
from calculators.models.validation import (
    ModelValidationError,
    Tolerances,
    ValidationReport,
    validate_model,
)

__all__ = [
    "MODEL_PROPERTIES",
    "ModelCalculator",
    "ModelValidationError",
    "Tolerances",
    "ValidationReport",
    "validate_model",
]
