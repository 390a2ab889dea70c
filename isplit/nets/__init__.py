"""Networks: building any classifier (:mod:`.models`, named without torch in :mod:`.catalog`),
its traced graph and cut points (:mod:`.graph`, :mod:`.blocks`), pretrained weights
(:mod:`.weights`), cutting it into a device head, a bottleneck and a server tail (:mod:`.split`),
and the halves as ONNX files run in onnxruntime (:mod:`.onnxrt`)."""
