"""Open-set recognition through the live API at the default decision, and corrections.

One user registers every other DreamBooth subject (3 photos each) and sends every other
photo of every subject: a registered subject's photo must come back first and present,
an unregistered one's with nothing present. Then the user marks the false alarms of one
photo of each unregistered subject as "not" the concept claimed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from tests import factories
from tests.app.helpers import mobilenet_settings, register_subject, retrieve
from tests.conftest import LiveServer

REFERENCES = 3


def subjects() -> list[str]:
    return sorted(p.name for p in factories.DATASET.iterdir() if p.is_dir())


def present(client: httpx.Client, photo: bytes) -> list[tuple[str, str]]:
    response = retrieve(client, "alice", photo)
    assert response.status_code == 200, response.text
    return [(m["concept"]["name"], m["concept"]["id"]) for m in response.json()["matches"]]


def test_open_set_through_the_api_and_corrections_that_hold(
    start_server: Any, database_url: str, tmp_path: Path
) -> None:
    server: LiveServer = start_server(
        mobilenet_settings(database_url, tmp_path / "data"), encoder=None
    )
    client = server.client(server.new_key("acme"))
    names = subjects()
    registered = names[1::2]
    ids = {s: register_subject(client, "alice", s, count=REFERENCES)["id"] for s in registered}
    queries = {
        subject: [
            factories.photo(subject, i) for i in range(REFERENCES, factories.photo_count(subject))
        ]
        for subject in names
    }

    def found_first() -> list[bool]:
        return [
            present(client, photo)[:1] == [(s, ids[s])] for s in registered for photo in queries[s]
        ]

    found = found_first()
    unregistered = [s for s in names if s not in registered]
    # Every photo of a subject the user never registered is a query.
    strangers = {
        s: [factories.photo(s, i) for i in range(factories.photo_count(s))] for s in unregistered
    }
    claims = {s: [present(client, photo) for photo in strangers[s]] for s in unregistered}
    rejected = [not claim for s in unregistered for claim in claims[s]]
    found_rate, rejected_rate = sum(found) / len(found), sum(rejected) / len(rejected)
    # Measured at this split: 0.929 found, 0.984 rejected (bench/RESULTS.md); the former
    # rule rejected about 0.6 of the unregistered subjects' photos.
    assert found_rate >= 0.85 and rejected_rate >= 0.9, (found_rate, rejected_rate)
    assert (found_rate + rejected_rate) / 2 >= 0.92, (found_rate, rejected_rate)
    assert not all(rejected), "this split must have false alarms to correct"

    # Corrections: the first photo of each unregistered subject that was claimed is
    # marked as not each concept it was claimed as; the subject's other photos are
    # then rejected, and the registered subjects are still found.
    for subject in unregistered:
        for photo, claim in zip(strangers[subject], claims[subject], strict=True):
            if claim:
                for _, concept_id in claim:
                    marked = client.post(
                        f"/v1/users/alice/concepts/{concept_id}/negatives",
                        files=[("images", ("not.jpg", photo, "image/jpeg"))],
                    )
                    assert marked.status_code == 201, marked.text
                break
    marked_photos = {
        s: next((p for p, c in zip(strangers[s], claims[s], strict=True) if c), None)
        for s in unregistered
    }
    others = [
        not present(client, photo)
        for s in unregistered
        for photo in strangers[s]
        if photo is not marked_photos[s]
    ]
    still = found_first()
    assert sum(others) / len(others) >= 0.95, sum(others) / len(others)
    assert sum(still) / len(still) >= found_rate - 0.05, (sum(still) / len(still), found_rate)
