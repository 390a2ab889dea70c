"""Networks: building torchvision classifiers (:mod:`.models`), their pretrained weights
(:mod:`.weights`) and cutting them into a device head, a bottleneck and a server tail
(:mod:`.split`)."""
