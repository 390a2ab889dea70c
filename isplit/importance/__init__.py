"""I-SPLIT before any retraining: per-image layer Grad-CAM in one pass (:mod:`.gradcam`), the
CUI curve (:mod:`.cui`) and the candidate split points (:mod:`.candidates`)."""
