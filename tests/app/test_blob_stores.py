"""The photo store's contract, kept alike by the local folder and by S3 (a real S3 server)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from pydantic import SecretStr

from app.domain.errors import BlobStoreUnavailable
from app.settings import Settings
from app.storage.blobs import BlobStore, LocalBlobStore, open_blob_store
from app.storage.blobs_s3 import S3BlobStore, S3Config
from tests.s3_server import S3Server

KEY = f"t1/u1/ab/{'ab' * 32}"


@pytest.fixture(params=["folder", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BlobStore]:
    made: BlobStore
    if request.param == "folder":
        made = LocalBlobStore(tmp_path / "blobs")
    else:
        s3: S3Server = request.getfixturevalue("s3_server")
        made = S3BlobStore(S3Config.from_settings(Settings(**s3.settings(s3.new_bucket()))))
    made.check()
    yield made
    made.close()


def keys_of(store: BlobStore) -> set[str]:
    return {stored.key for stored in store.files()}


def test_put_get_exists_delete(store: BlobStore) -> None:
    assert not store.exists(KEY)
    store.put(KEY, b"photo bytes")
    assert store.exists(KEY) and store.get(KEY) == b"photo bytes"
    assert keys_of(store) == {KEY}
    store.delete(KEY)
    assert not store.exists(KEY) and keys_of(store) == set()
    store.delete(KEY)  # gone already is fine


def test_a_missing_key_reads_as_file_not_found(store: BlobStore) -> None:
    with pytest.raises(FileNotFoundError):
        store.get(KEY)
    assert store.mtime(KEY) == float("inf")
    store.remove_file(KEY)  # gone already is fine


def test_overwrite_replaces_the_whole_value(store: BlobStore) -> None:
    store.put(KEY, b"first, and longer than the second")
    store.put(KEY, b"second")
    assert store.get(KEY) == b"second"
    assert keys_of(store) == {KEY}


def test_a_large_object_round_trips(store: BlobStore) -> None:
    data = os.urandom(12 * 1024 * 1024)  # above the service's default cap per photo (10 MiB)
    store.put(KEY, data)
    assert store.get(KEY) == data


def test_listing_gives_every_key_with_its_age(store: BlobStore) -> None:
    keys = {f"t1/u{user}/{h}/{h * 32}" for user in (1, 2) for h in ("ab", "cd", "ef")}
    for key in keys:
        store.put(key, key.encode())
    listed = list(store.files())
    assert {f.key for f in listed} == keys
    assert not any(f.temporary for f in listed)
    now = time.time()
    # S3's LastModified has one-second resolution.
    assert all(now - 60 < f.mtime <= now + 1 for f in listed)
    assert all(abs(store.mtime(f.key) - f.mtime) < 1.01 for f in listed)


@pytest.mark.parametrize(
    "key", ["../t1/u1/x", "t1/../../x", "/t1/u1/x", "t1/u1/Ab", "t1/zoë/ab/x", "t1/渡辺/x", ""]
)
def test_keys_outside_the_key_alphabet_are_refused_before_any_io(
    store: BlobStore, key: str
) -> None:
    # Keys are made of internal ids and hashes; an end user's own id (any Unicode) is
    # never part of one. The API tests register users with such ids on both stores.
    for call in (store.get, store.exists, store.delete, lambda k: store.put(k, b"x")):
        with pytest.raises(ValueError, match="invalid blob key"):
            call(key)
    assert keys_of(store) == set()


def test_deleting_a_namespace_deletes_it_whole_and_nothing_else(store: BlobStore) -> None:
    mine = [f"t1/u1/{h}/{h * 32}" for h in ("ab", "cd")]
    others = [f"t1/u10/ab/{'ab' * 32}", f"t1/u2/ab/{'ab' * 32}", f"t10/u1/ab/{'ab' * 32}"]
    for key in mine + others:
        store.put(key, b"x")
    store.delete_namespace("t1/u1")
    assert keys_of(store) == set(others)
    store.delete_namespace("t1/u1")  # nothing left: fine


def test_erasing_a_namespace_of_more_than_one_listing_page(s3_server: S3Server) -> None:
    # S3 lists and deletes at most 1,000 keys per request.
    bucket = s3_server.new_bucket()
    store = S3BlobStore(S3Config.from_settings(Settings(**s3_server.settings(bucket))))
    client = s3_server.client()
    keys = [f"photos/t1/u1/{n % 256:02x}/{n:064x}" for n in range(1_234)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda key: client.put_object(Bucket=bucket, Key=key, Body=b"x"), keys))
    store.put(f"t1/u2/ab/{'ab' * 32}", b"kept")
    assert len(keys_of(store)) == 1_235
    store.delete_namespace("t1/u1")
    assert s3_server.keys(bucket) == [f"photos/t1/u2/ab/{'ab' * 32}"]
    store.close()


def test_two_prefixes_in_one_bucket_are_two_stores(s3_server: S3Server) -> None:
    bucket = s3_server.new_bucket()
    a = S3BlobStore(S3Config.from_settings(Settings(**s3_server.settings(bucket, "one"))))
    b = S3BlobStore(S3Config.from_settings(Settings(**s3_server.settings(bucket, "two/deeper"))))
    a.put(KEY, b"a")
    assert keys_of(b) == set() and not b.exists(KEY)
    b.put(KEY, b"b")
    a.delete_namespace("t1/u1")
    assert b.get(KEY) == b"b" and keys_of(a) == set()
    assert sorted(s3_server.keys(bucket)) == [f"two/deeper/{KEY}"]


def test_the_folder_is_the_default_and_needs_no_service(tmp_path: Path) -> None:
    store = open_blob_store(Settings(data_dir=tmp_path))
    assert isinstance(store, LocalBlobStore) and store.root == (tmp_path / "blobs").resolve()


@pytest.mark.parametrize(
    "url",
    ["s3://", "s3://UPPER", "s3://a", "http://bucket/x", "s3://bucket/sp ace", "bucket"],
)
def test_a_malformed_store_url_fails_at_start_up(url: str) -> None:
    with pytest.raises(ValueError, match="RAPPORT_BLOB_STORE must be"):
        Settings(blob_store=url)


def test_half_a_key_pair_fails_at_start_up() -> None:
    with pytest.raises(ValueError, match="RAPPORT_S3_SECRET_ACCESS_KEY"):
        Settings(blob_store="s3://bucket", s3_access_key_id=SecretStr("AKID"))


def test_the_prefix_is_normalised() -> None:
    config = S3Config.from_settings(Settings(blob_store="s3://my-bucket/a/b/"))
    assert (config.bucket, config.prefix) == ("my-bucket", "a/b/")
    assert S3Config.from_settings(Settings(blob_store="s3://my-bucket")).prefix == ""
    keys = Settings(
        blob_store="s3://b-1",
        s3_access_key_id=SecretStr("AKID-NOT-SHOWN"),
        s3_secret_access_key=SecretStr("SK-NOT-SHOWN"),
    )
    assert "NOT-SHOWN" not in repr(S3Config.from_settings(keys)) + repr(keys) + str(keys)


def test_an_unreachable_store_names_its_setting(s3_server: S3Server) -> None:
    bucket = s3_server.new_bucket()
    dead = f"http://127.0.0.1:{_closed_port()}"
    with pytest.raises(BlobStoreUnavailable, match=r"^RAPPORT_S3_ENDPOINT_URL: cannot reach"):
        open_blob_store(Settings(**s3_server.settings(bucket, endpoint=dead)))


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
