"""Blob storage of outputs: local folder, safe keys, atomic writes."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from openremix.media.storage import (
    BlobStorage,
    LocalStorage,
    content_type_for_key,
    new_output_key,
    open_storage,
)


def test_put_get_delete_round_trip(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path / "outputs")  # created on first write
    key = new_output_key("jpg")
    assert store.get(key) is None
    assert not store.exists(key)
    assert store.path_for(key) is None
    store.put(key, b"\xff\xd8image", "image/jpeg")
    assert store.get(key) == b"\xff\xd8image"
    assert store.exists(key)
    assert store.path_for(key) == tmp_path / "outputs" / key
    store.put(key, b"replaced", "image/jpeg")
    assert store.get(key) == b"replaced"
    store.delete(key)
    assert store.get(key) is None
    store.delete(key)  # deleting twice is fine


def test_local_storage_satisfies_the_protocol(tmp_path: Path) -> None:
    assert isinstance(LocalStorage(tmp_path), BlobStorage)


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
def test_unsafe_keys_are_refused(tmp_path: Path, key: str) -> None:
    store = LocalStorage(tmp_path / "root")
    for call in (
        lambda: store.put(key, b"x", "image/png"),
        lambda: store.get(key),
        lambda: store.delete(key),
        lambda: store.exists(key),
        lambda: store.path_for(key),
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


def test_content_type_follows_the_extension() -> None:
    assert content_type_for_key("abc.jpg") == "image/jpeg"
    assert content_type_for_key("abc.webp") == "image/webp"
    assert content_type_for_key("abc.png") == "image/png"
    assert content_type_for_key("abc") == "application/octet-stream"


def test_readers_never_see_a_partial_file(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path)
    key = new_output_key("png")
    old, new = b"A" * 2_000_000, b"B" * 2_000_000
    store.put(key, old, "image/png")
    stop = threading.Event()
    seen: set[bytes] = set()

    def reader() -> None:
        while not stop.is_set():
            data = store.get(key)
            assert data is not None
            seen.add(data[:1] + data[-1:] + str(len(data)).encode())

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(20):
            store.put(key, new if i % 2 == 0 else old, "image/png")
    finally:
        stop.set()
        thread.join()
    assert seen <= {b"AA2000000", b"BB2000000"}
    assert sorted(os.listdir(tmp_path)) == [key]  # no temp files left behind


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


@pytest.mark.parametrize("location", ["s3://bucket/outputs", "S3://bucket"])
def test_s3_is_not_supported_yet(location: str) -> None:
    with pytest.raises(ValueError, match="not supported yet"):
        open_storage(location)


@pytest.mark.parametrize("location", ["", "gs://bucket", "file://otherhost/x"])
def test_other_locations_are_refused(location: str) -> None:
    with pytest.raises(ValueError):
        open_storage(location)
