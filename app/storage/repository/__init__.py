"""SQL reads and writes, one module per aggregate. Every function is keyword-only and
takes its session; nothing outside this package (and ``app/storage/db``) writes SQL.

- ``users``: the per-user lock and version every write starts with; lookups, listing, erasing.
- ``concepts``, ``images``, ``vectors``: a user's concepts, their photos and the photos' vectors.
- ``tenants``, ``keys``: apps and their API keys; what a tenant stores.
- ``maintenance``: the whole-database checks and repairs of ``rapport doctor``.

Callers import the aggregate module: ``from app.storage.repository import concepts``.
"""
