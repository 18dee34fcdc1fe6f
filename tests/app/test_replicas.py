"""Three replicas with no shared disk behind HAProxy: one PostgreSQL, one S3 bucket, one Redis.

A change made through any replica is seen through every other on the next
request; a replica SIGKILLed mid-traffic and restarted loses no acknowledged
write, returns no deleted item and mixes no tenants' data. The soak's length is
RAPPORT_TEST_SOAK_S (25 s by default, for CI; longer by hand).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import factories
from tests.app.helpers import decoded, image_urls, matched_names, register, retrieve
from tests.app.replicas import NAMES, Cluster, haproxy_missing
from tests.app.soak import Soak, Tenant
from tests.conftest import fresh_postgres
from tests.s3_server import S3Server

pytestmark = [pytest.mark.replicas, pytest.mark.postgres]

SOAK_S = float(os.environ.get("RAPPORT_TEST_SOAK_S", "25"))
EXACT = 0.9999


@pytest.fixture(scope="module")
def cluster(
    postgres_template: str,
    s3_server: S3Server,
    redis_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Cluster]:
    if haproxy_missing():
        if os.environ.get("CI"):
            raise AssertionError("haproxy is not installed (.ci/run installs it)")
        pytest.skip("haproxy is not installed (apt-get install haproxy)")
    workdir: Path = tmp_path_factory.mktemp("replicas")
    with fresh_postgres(postgres_template) as database_url:
        # High rate limits: the soak measures failover, not the limiter (shared through Redis).
        built = Cluster(
            workdir,
            database_url,
            s3_server,
            redis_url,
            RAPPORT_RATE_LIMIT_RPS="10000",
            RAPPORT_RATE_LIMIT_BURST="10000",
        )
        try:
            yield built
        finally:
            built.stop()


def test_a_change_through_one_replica_is_seen_through_every_other_at_once(
    cluster: Cluster,
) -> None:
    key = cluster.new_key("acme")
    balancer = cluster.client(key)
    direct = {name: cluster.client(key, name) for name in NAMES}
    photos = [factories.photo("dog", i) for i in range(3)]
    # Every replica caches alice's empty index and concept list first.
    for client in direct.values():
        assert retrieve(client, "alice", photos[0]).json()["matches"] == []

    created = register(balancer, "alice", "<bo>", photos, description="alice's corgi")
    assert created.status_code == 201, created.text
    home = created.headers["x-replica"]
    dog = created.json()
    base = f"/v1/users/alice/concepts/{dog['id']}"
    # Affinity: alice's requests all go to one replica; users spread over the replicas.
    assert {balancer.get(base).headers["x-replica"] for _ in range(5)} == {home}
    homes = {balancer.get(f"/v1/users/user-{n}/concepts").headers["x-replica"] for n in range(24)}
    assert len(homes) > 1

    for name, client in direct.items():
        assert client.get(base).status_code == 200, name
        image = dog["images"][1]["id"]
        assert client.get(f"{base}/images/{image}").content == photos[1], name
        assert matched_names(retrieve(client, "alice", photos[2], min_score=EXACT)) == ["<bo>"]
        chat = client.post(
            "/v1/users/alice/chat", json={"question": "where is <bo>?", "min_score": 0.5}
        )
        assert chat.status_code == 200, chat.text
        (reference,) = image_urls(chat.json()["prompt"])  # the stored photo, read from S3
        assert decoded(reference).size == (512, 512)

    a, b, c = (direct[name] for name in NAMES)
    assert a.patch(base, json={"name": "<bobo>"}).status_code == 200
    assert b.get(base).json()["name"] == "<bobo>"
    assert matched_names(retrieve(c, "alice", photos[0], min_score=EXACT)) == ["<bobo>"]
    added = b.post(f"{base}/images", files=[("images", ("x.jpg", factories.photo("dog", 3)))])
    assert added.status_code == 201
    new_image = added.json()["images"][-1]["id"]
    assert c.get(f"{base}/images/{new_image}").content == factories.photo("dog", 3)
    assert c.delete(f"{base}/images/{new_image}").status_code == 204
    assert a.get(f"{base}/images/{new_image}").status_code == 404
    assert c.delete(base).status_code == 204
    assert a.get(base).status_code == 404
    assert retrieve(b, "alice", photos[0]).json()["matches"] == []

    register(a, "alice", "cat", [factories.photo("cat", 0)])
    register(a, "bob", "cat", [factories.photo("cat", 0)])
    assert b.delete("/v1/users/alice").status_code == 204
    assert c.get("/v1/users/alice/concepts").json()["items"] == []
    assert [i["name"] for i in c.get("/v1/users/bob/concepts").json()["items"]] == ["cat"]
    # Erasing alice emptied her prefix in the bucket; bob's one photo is all that is left.
    assert len(cluster.s3.keys(cluster.bucket)) == 1
    assert cluster.local_photo_files() == []
    for client in (balancer, *direct.values()):
        client.close()


def test_a_replica_killed_mid_traffic_loses_nothing(cluster: Cluster) -> None:
    tenants = [Tenant(name, cluster.new_key(name)) for name in ("acme", "globex")]
    soak = Soak(cluster, tenants, users_per_tenant=2)
    soak.start()
    started = time.monotonic()
    soak.wait(SOAK_S / 3)
    victim = soak.busiest()  # the replica whose users' traffic the kill cuts most
    killed_at = time.monotonic()
    cluster.kill(victim)
    cluster.balancer.wait_for({victim: "DOWN"}, timeout=30)
    cluster.restart(victim)
    cluster.balancer.wait_for({victim: "UP"}, timeout=60)
    back_at = time.monotonic()
    soak.wait(max(started + SOAK_S - time.monotonic(), 3.0))  # traffic after the return too
    soak.stop()

    window = (killed_at, back_at + 2.0)
    during, outside = soak.requests_in(window)
    failed_during = sum(1 for r in during if not r.ok)
    print(
        f"\nreplica soak: {time.monotonic() - started:.1f} s, {len(soak.workers)} clients of "
        f"{len(tenants)} tenants, {len(soak.log)} requests ({soak.writes_acked} acknowledged "
        f"writes); {victim} SIGKILLed, back after {back_at - killed_at:.1f} s; failover window "
        f"{window[1] - window[0]:.1f} s: {failed_during} errors of {len(during)} requests "
        f"({100 * failed_during / max(1, len(during)):.1f}%); outside it: "
        f"{sum(1 for r in outside if not r.ok)} of {len(outside)} (shared 2-core machine)"
    )
    assert soak.writes_acked > 0 and len(outside) > 0
    assert soak.violations == []  # lost writes, deleted items returned, foreign data
    assert [r.what for r in outside if not r.ok] == []
    assert any(r.replica == victim for r in soak.log if r.started > back_at)  # its users came back
    # After the failover, every replica (not only the balancer's choice) sees everything.
    for name in NAMES:
        assert soak.verify_all(name) == []
    assert cluster.local_photo_files() == []
