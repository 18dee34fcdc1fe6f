"""rapport's HTTP service: settings, storage, use cases and routes."""
