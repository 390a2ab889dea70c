"""What a user reads: the per-experiment ``summary.md`` (the figures are :mod:`isplit.figures`)."""
