"""Use cases: what the service does, one function per client action, free of HTTP.

They take ``Services`` and a ``UserScope``, read and write through ``app.storage``,
decode photos through ``photo_policy`` and write a user's data in ``user_write``.
"""
