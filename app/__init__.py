"""rapport's HTTP service, in layers whose imports only point down:

``http`` (routes, schemas, middleware, error table) → ``usecases`` (what the service
does) → ``storage`` (SQL, photo stores) and ``domain`` (errors, scope, text rules);
``security`` (keys, auth gate, rate limits, URL fetching) beside ``http``. ``main``
builds the app, ``services`` its long-lived parts, ``settings`` reads the environment,
``cli`` is the ``rapport`` command and ``console`` the browser console's files.
"""

from importlib import metadata


def version() -> str:
    """The installed rapport's version (``0+unknown`` when run from a tree never installed)."""
    try:
        return metadata.version("rapport")
    except metadata.PackageNotFoundError:
        return "0+unknown"
