"""The QoS choice: which candidate an application should use on each link (Split-Et-Impera's
step 3, docs/latency.md §6), read from the latency table.

:mod:`.candidates` names the candidates (every evaluated split, LC, RC and the camera's options)
with what each sends, the work on each side and its accuracies; the latency stage
(:mod:`isplit.latency.simulate`) times them; :mod:`.recommend` picks the candidate that meets the
constraints and :mod:`.recommend_text` writes it for people.
"""
