"""Split-Et-Impera after I-SPLIT: how long each candidate takes end to end, and which one meets
a QoS target (docs/latency.md).

:mod:`.devices` charges device and server compute by FLOPs and weight layers (named profiles
fitted to published latencies); :mod:`.compute` and :mod:`.profiling` time them instead (the
explicit ``scale``/``table`` options); :mod:`.profiles` names the links; :mod:`.netsim` simulates
a camera stream packet by packet, with :mod:`.loss` (i.i.d., Gilbert–Elliott), Linux's TCP
(:mod:`.tcp_linux`, :mod:`.tcp_recovery`, :mod:`.tcp_receiver`, :mod:`.congestion`) or SCNSL's
(:mod:`.tcp_sei`), and seed-stable statistics (:mod:`.stats`); :mod:`.ns3sim` runs the same
stream in ns-3; :mod:`.simulate` runs every candidate over every link into ``latency.parquet``;
:mod:`.recommend` picks the candidate per network.
"""
