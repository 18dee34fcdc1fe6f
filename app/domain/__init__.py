"""The service's own vocabulary, free of FastAPI and SQL: its errors, the user scope,
and the rules for the text it stores.
"""
