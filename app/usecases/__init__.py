"""Use cases: one function per thing a client can do, called by exactly one route."""
