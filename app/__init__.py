"""rapport's HTTP service: settings, storage, use cases and routes."""

from importlib import metadata


def version() -> str:
    """The installed rapport's version (``0+unknown`` when run from a tree never installed)."""
    try:
        return metadata.version("rapport")
    except metadata.PackageNotFoundError:
        return "0+unknown"
