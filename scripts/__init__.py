"""Programs a person runs from the repository root as ``python -m scripts.<name>``; README.md
says what belongs here and what in ``tools/``."""
