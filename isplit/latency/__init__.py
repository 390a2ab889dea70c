"""Split-Et-Impera after I-SPLIT: how long each split takes end to end, and which one meets a
QoS target.

:mod:`.compute` times (or imports) head, encoder, decoder and tail; :mod:`.profiles` names the
links; :mod:`.netsim` simulates a camera stream packet by packet; :mod:`.simulate` runs every
split over every link into ``latency.parquet``; :mod:`.recommend` picks the split per network.
"""
