"""Ranking algorithms the serving pipeline runs, kept apart from the service.

Arrays in, arrays out: no web framework, no live state, no event store. ``index``
(exact and faiss maximum inner product search), ``rerank`` (MMR diversity and a cap of
exposure per category), ``bandits`` (epsilon-greedy and linear bandits) and
``explain`` (reasons for a recommended item). :mod:`recloop.serve` wires them to a
model, the live catalog and the event log, and holds their state.
"""
