"""What the retrained splits say: gathering them, testing the predictors against them
(:mod:`.quality`) and the per-experiment summary."""
