"""Who may do what, and at what rate: API keys, the auth gate, rate limits, and the
guarded fetching of photo URLs.
"""
