"""Serving: the pure-library stages of the recommendation pipeline (no web imports).

``retrieval`` (candidates by exact or approximate inner-product search), ``rerank``
(business filters, MMR diversity, per-category exposure caps), ``explore`` (epsilon-greedy
and linear bandits learning from logged clicks) and ``explain`` (reasons for an item).
"""
