"""Training: one loop with resumable checkpoints (:mod:`.loop`), fine-tuning the classifier
(:mod:`.finetune`) and retraining a split's bottleneck (:mod:`.retrain`)."""
