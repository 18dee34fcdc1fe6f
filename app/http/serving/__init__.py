"""Serving: between the HTTP routes and the blocking use cases.

``chat`` runs a chat off the event loop and answers it whole or as typed events;
``sse_rapport`` and ``sse_openai`` render those events as each protocol's
server-sent events.
"""
