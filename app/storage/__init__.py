"""Where data lives: the SQL schema and migrations (db), all SQL (repository), the
photo stores (folder or S3) and the thumbnail cache.
"""
