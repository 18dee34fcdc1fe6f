"""SQL reads and writes, one module per aggregate. Every function is keyword-only and
takes its session; nothing outside this package (and ``app/storage/db``) writes SQL.

- ``users``: the per-user lock and version every write starts with; lookups, listing, erasing.
- ``concepts``, ``images``, ``vectors``: a user's concepts, their photos and the photos' vectors.
- ``tenants``, ``keys``: apps and their API keys; what a tenant stores.
- ``maintenance``: the whole-database checks and repairs of ``rapport doctor``.

Callers import the aggregate module (``from app.storage.repository import concepts``); the
names re-exported here keep older callers (benchmarks, tests) working.
"""

from app.storage.repository.concepts import (
    ConceptSummary,
    concept_categories,
    concept_summaries,
    count_concepts,
    get_concept,
    list_concepts,
    name_in_use,
)
from app.storage.repository.images import (
    blobs_in_use,
    count_images,
    get_image,
    image_exists,
    images_of,
)
from app.storage.repository.tenants import stored_bytes, tenant_bytes, tenant_usage
from app.storage.repository.users import (
    UserCounts,
    UserLock,
    bump_version,
    delete_user,
    find_user,
    list_users,
    lock_user,
    relock_user,
    user_version,
)
from app.storage.repository.vectors import embedding_ids, user_vectors

__all__ = [
    "ConceptSummary",
    "UserCounts",
    "UserLock",
    "blobs_in_use",
    "bump_version",
    "concept_categories",
    "concept_summaries",
    "count_concepts",
    "count_images",
    "delete_user",
    "embedding_ids",
    "find_user",
    "get_concept",
    "get_image",
    "image_exists",
    "images_of",
    "list_concepts",
    "list_users",
    "lock_user",
    "name_in_use",
    "relock_user",
    "stored_bytes",
    "tenant_bytes",
    "tenant_usage",
    "user_vectors",
    "user_version",
]
