"""What a camera sends when nothing is split: the remote-computing (RC) baselines.

A split is only worth its trouble if it beats sending the picture. A camera sends its frame at
its own resolution and channels (the dataset's source image: 300×300 grey for ELPV, 28×28 for
animal-mnist), either raw or JPEG-compressed; the server then resizes it for the network.
:mod:`.frames` measures, per test and validation image, the bytes of each option and the
fine-tuned model's accuracy on what the server decodes — the input-compression baseline of the
split-computing literature — so the recommendation compares splits with what a camera would
really send, not with the network's input tensor.
"""
