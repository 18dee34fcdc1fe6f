"""A change of CLIP model never mixes vectors; reindex re-embeds from the stored photos."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from sqlalchemy import select

from app.main import build_services
from app.storage.db.models import Embedding
from app.usecases.reindex import reindex_all
from retrieval.config import EncoderConfig
from retrieval.encoder import Encoder
from tests import factories
from tests.app.helpers import matched_names, register_subject, retrieve
from tests.conftest import BOTH_BLOB_STORES, LiveServer, make_settings


@BOTH_BLOB_STORES
def test_reindex_after_a_model_change(
    start_server: object,
    encoder: Encoder,
    database_url: str,
    tmp_path: Path,
    blob_store: dict[str, Any],
) -> None:
    settings = make_settings(database_url, tmp_path / "data", **blob_store)
    old: LiveServer = start_server(settings)  # type: ignore[operator]
    key = old.new_key("acme")
    register_subject(old.client(key), "alice", "dog")
    register_subject(old.client(key), "alice", "cat")
    old.stop()

    # "Another model": the same architecture from a weights file has another model id.
    weights = tmp_path / "other.pt"
    torch.save({k: v + 0.01 for k, v in encoder._model.state_dict().items()}, weights)
    other = Encoder.from_config(EncoderConfig(model="rapport-test-tiny", pretrained=str(weights)))
    assert other.model_id != encoder.model_id
    new_settings = make_settings(
        database_url, tmp_path / "data", clip_pretrained=str(weights), **blob_store
    )
    services = build_services(new_settings, encoder=other)
    server = LiveServer(services).start()
    try:
        client = server.client(key)
        query = factories.photo("dog", 1)
        assert retrieve(client, "alice", query, min_score=-1).json()["matches"] == []
        version = alice_version(services)
        assert reindex_all(services) == 6
        assert reindex_all(services) == 0
        # One version bump for alice's six photos (one batch), not one per photo: each
        # bump makes every process reload her index and refit her decision rule.
        assert alice_version(services) == version + 1
        assert matched_names(retrieve(client, "alice", query, min_score=0.9999)) == ["dog"]
        with services.sessions() as session:
            models = session.scalars(select(Embedding.model_id)).all()
        assert sorted(set(models)) == sorted({encoder.model_id, other.model_id})
        assert models.count(other.model_id) == 6
    finally:
        server.stop()
        services.close()


def alice_version(services: Any) -> int:
    from app.storage.repository import tenants as tenant_rows
    from app.storage.repository import users as user_rows

    with services.sessions() as session:
        tenant = tenant_rows.find_tenant(session=session, name="acme")
        assert tenant is not None
        found = user_rows.user_version(session=session, tenant_id=tenant.id, external_id="alice")
    assert found is not None
    return found[1]
