"""Serving: the recommendation service, its event store, and the web app around it.

:class:`~recloop.serve.service.RecommendationService` holds the model, the live event
log and the recommendation pipeline and imports nothing of the web layer;
:func:`~recloop.serve.app.create_app` wraps it in a FastAPI application.
"""
