"""Predict on a new recording: `merc predict VIDEO` (see `__main__`), run by the stages `dvc repro` runs."""
