"""Retrieval over the real photos of the shared dataset, with the tiny random model."""

from __future__ import annotations

import httpx

from tests import factories
from tests.app.helpers import register_subject, retrieve


def test_real_photos_give_well_formed_results(api: httpx.Client) -> None:
    subjects = factories.subjects()[:8]
    owned = {register_subject(api, "alice", s, count=3)["id"]: s for s in subjects}
    for subject in subjects:
        held_out = factories.photo(subject, factories.photo_count(subject) - 1)
        response = retrieve(api, "alice", held_out, top_k=3, min_score=-1)
        assert response.status_code == 200, response.text
        matches = response.json()["matches"]
        assert len(matches) == 3
        assert {m["concept"]["id"] for m in matches} <= set(owned)
        assert len({m["concept"]["id"] for m in matches}) == 3
        scores = [m["score"] for m in matches]
        assert all(-1.0 <= s <= 1.0 for s in scores) and scores == sorted(scores, reverse=True)
        assert all(m["source"] == "image" for m in matches)
        # A registered photo is its own nearest neighbour whatever the weights.
        own = retrieve(api, "alice", factories.photo(subject, 0), top_k=1, min_score=-1)
        own = own.json()["matches"]
        assert owned[own[0]["concept"]["id"]] == subject
