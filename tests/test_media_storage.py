"""Blob storage of outputs: one behavioural suite run against every backend.

`storage` is a `LocalStorage` in a temp folder and an `S3Storage` on a fresh bucket of the S3
test server (`s3_server.py`: moto's standalone server on loopback; skipped without it). Tests
about one backend's own mechanics (temp files, `file://` URLs) use that backend alone.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from openremix.media.storage import (
    BlobStorage,
    LocalStorage,
    OutputUnreadable,
    content_type_for_key,
    new_output_key,
    open_storage,
    read_verified,
)
from tests.support.s3_server import CREDENTIALS, shared_server, unavailable_reason


@pytest.fixture(params=["local", "s3"])
def storage(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> BlobStorage:
    """An empty store of each backend; a local one makes its folder on first write."""
    if request.param == "local":
        return LocalStorage(tmp_path / "outputs")
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    from openremix.media.s3_storage import S3Storage

    server = shared_server()
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    return S3Storage(server.create_bucket(), "outputs", endpoint_url=server.endpoint_url)


def test_put_get_delete_round_trip(storage: BlobStorage) -> None:
    key = new_output_key("jpg")
    assert storage.get(key) is None
    assert not storage.exists(key)
    assert storage.path_for(key) is None
    storage.put(key, b"\xff\xd8image", "image/jpeg")
    assert storage.get(key) == b"\xff\xd8image"
    assert storage.exists(key)
    path = storage.path_for(key)  # a local file to serve, or None: read it with get()
    assert path is None or path.read_bytes() == b"\xff\xd8image"
    storage.put(key, b"replaced", "image/jpeg")
    assert storage.get(key) == b"replaced"
    storage.delete(key)
    assert storage.get(key) is None
    assert not storage.exists(key)
    storage.delete(key)  # deleting twice is fine


def test_keys_do_not_see_each_other(storage: BlobStorage) -> None:
    first, second = new_output_key("png"), new_output_key("png")
    storage.put(first, b"first", "image/png")
    storage.put(second, b"second", "image/png")
    storage.delete(first)
    assert storage.get(first) is None
    assert storage.get(second) == b"second"


def test_storage_satisfies_the_protocol(storage: BlobStorage) -> None:
    assert isinstance(storage, BlobStorage)


def test_local_storage_serves_files_from_its_folder(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path / "outputs")
    key = new_output_key("jpg")
    store.put(key, b"\xff\xd8image", "image/jpeg")
    assert store.path_for(key) == tmp_path / "outputs" / key


@pytest.mark.parametrize(
    "key",
    [
        "../escape.jpg",
        "..",
        "a/b.jpg",
        "/etc/passwd",
        "a\\b.jpg",
        ".hidden",
        "name.tar.gz",
        "",
        "spa ce.jpg",
        "nul\0.jpg",
        "x" * 201,
    ],
)
def test_unsafe_keys_are_refused(storage: BlobStorage, tmp_path: Path, key: str) -> None:
    for call in (
        lambda: storage.put(key, b"x", "image/png"),
        lambda: storage.get(key),
        lambda: storage.delete(key),
        lambda: storage.exists(key),
        lambda: storage.path_for(key),
    ):
        with pytest.raises(ValueError):
            call()
    assert not (tmp_path / "escape.jpg").exists()


def test_output_keys_are_unguessable_and_unique() -> None:
    keys = {new_output_key("png") for _ in range(2000)}
    assert len(keys) == 2000
    for key in keys:
        stem, _, ext = key.partition(".")
        assert ext == "png"
        assert len(stem) >= 32  # 192 random bits
    assert new_output_key(".WEBP").endswith(".webp")
    with pytest.raises(ValueError):
        new_output_key("../x")


def test_an_output_is_read_back_only_as_it_was_written(storage: BlobStorage) -> None:
    data = b"\xff\xd8\xff" + bytes(range(256)) * 4
    key = new_output_key("jpg", data)
    assert len(key.partition(".")[0]) == 64  # 192 random bits, then 128 bits of SHA-256
    storage.put(key, data, "image/jpeg")
    assert read_verified(storage, key) == data
    for damaged in (b"", data[:100], data[:-1] + b"\x00"):
        storage.put(key, damaged, "image/jpeg")
        with pytest.raises(OutputUnreadable, match="damaged") as caught:
            read_verified(storage, key)
        assert caught.value.reason == "damaged"
    storage.delete(key)
    with pytest.raises(OutputUnreadable, match="missing"):
        read_verified(storage, key)


def test_keys_made_before_checksums_are_read_as_they_are(storage: BlobStorage) -> None:
    key = new_output_key("png")
    storage.put(key, b"anything", "image/png")
    assert read_verified(storage, key) == b"anything"


def test_content_type_follows_the_extension() -> None:
    assert content_type_for_key("abc.jpg") == "image/jpeg"
    assert content_type_for_key("abc.webp") == "image/webp"
    assert content_type_for_key("abc.png") == "image/png"
    assert content_type_for_key("abc") == "application/octet-stream"


def test_readers_never_see_a_partial_file(storage: BlobStorage, tmp_path: Path) -> None:
    key = new_output_key("png")
    old, new = b"A" * 2_000_000, b"B" * 2_000_000
    storage.put(key, old, "image/png")
    stop = threading.Event()
    seen: set[bytes] = set()

    def reader() -> None:
        while not stop.is_set():
            data = storage.get(key)
            assert data is not None
            seen.add(data[:1] + data[-1:] + str(len(data)).encode())

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(20):
            storage.put(key, new if i % 2 == 0 else old, "image/png")
    finally:
        stop.set()
        thread.join()
    assert seen <= {b"AA2000000", b"BB2000000"}
    if isinstance(storage, LocalStorage):
        assert sorted(os.listdir(storage.root)) == [key]  # no temp files left behind


def test_failed_write_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LocalStorage(tmp_path)
    key = new_output_key("png")

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        store.put(key, b"data", "image/png")
    assert os.listdir(tmp_path) == []


def test_open_storage_accepts_folders_and_file_urls(tmp_path: Path) -> None:
    by_path = open_storage(str(tmp_path / "a"))
    by_url = open_storage((tmp_path / "b").as_uri())
    assert isinstance(by_path, LocalStorage) and by_path.root == tmp_path / "a"
    assert isinstance(by_url, LocalStorage) and by_url.root == tmp_path / "b"


@pytest.mark.parametrize(
    ("location", "bucket", "prefix"),
    [
        ("s3://my-bucket/outputs", "my-bucket", "outputs"),
        ("S3://my-bucket", "my-bucket", ""),
        ("s3://my-bucket/a/b/", "my-bucket", "a/b"),
    ],
)
def test_open_storage_opens_s3_urls(location: str, bucket: str, prefix: str) -> None:
    pytest.importorskip("boto3", reason="s3:// storage needs boto3: pip install -e '.[s3]'")
    from openremix.media.s3_storage import S3Storage

    store = open_storage(location, endpoint_url="http://127.0.0.1:9")
    assert isinstance(store, S3Storage)
    assert (store.bucket, store.prefix) == (bucket, prefix)
    assert store.endpoint_url == "http://127.0.0.1:9"


@pytest.mark.parametrize(
    "location",
    [
        "",
        "gs://bucket",
        "file://otherhost/x",
        "s3://",
        "s3:///prefix",
        "s3://key:secret@bucket/x",
        "s3://bucket/x?region=eu-west-1",
    ],
)
def test_other_locations_are_refused(location: str) -> None:
    with pytest.raises(ValueError):
        open_storage(location)
