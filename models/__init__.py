"""Neural networks of the project. Nothing here imports `pipeline/` or `flows/`.

Models consume a `DialogueBatch` and return a `ModelOutput`; `build_model` constructs one from its
params.yaml block by registered kind.
"""

from models.batch import IGNORE_INDEX, DialogueBatch, ModelOutput
from models.registry import build_model, register, registered

__all__ = ["IGNORE_INDEX", "DialogueBatch", "ModelOutput", "build_model", "register", "registered"]
