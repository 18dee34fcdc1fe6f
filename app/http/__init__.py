"""The HTTP layer: routes, request and response schemas, dependencies, middleware,
the error table and its handlers, OpenAPI helpers, streaming and the chat renderers.
"""
