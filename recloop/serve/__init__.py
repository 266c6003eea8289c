"""Serving: the recommendation service, its event store, and the web app around it.

The pipeline's stages are pure library modules (no web imports): ``retrieval``
(candidates by exact or approximate inner-product search), ``rerank`` (business
filters, MMR diversity, per-category exposure caps), ``explore`` (epsilon-greedy and
linear bandits learning from logged clicks) and ``explain`` (reasons for an item).
:class:`~recloop.serve.service.RecommendationService` runs them over the model, the
live event log (``store``, ``state``) and the catalog, and imports nothing of the web
layer; :func:`~recloop.serve.app.create_app` wraps it in a FastAPI application.
"""
