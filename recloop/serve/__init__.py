"""Serving: the recommendation service, its event store, and the web app around it.

The pipeline's stages are one module each, holding the stage's config, code and state:
``retrieval`` (the candidate stage: exact or faiss search, or full scoring, with known
items, exclusions and filters left out), ``rerank`` (MMR diversity, per-category
exposure caps), ``explore`` (epsilon-greedy and linear bandits learning from logged
clicks) and ``explain`` (reasons for an item). Their algorithms live apart, in
:mod:`recloop.rank` (arrays in, arrays out). :class:`~recloop.serve.service.RecommendationService`
runs the stages over the model, the live event log (``store``, ``state``) and the
catalog, and imports nothing of the web layer; :func:`~recloop.serve.app.create_app`
wraps it in a FastAPI application. ``settings`` imports nothing heavy.
"""
