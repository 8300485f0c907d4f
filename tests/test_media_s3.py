"""S3-compatible output storage: what S3Storage adds, and api + worker processes sharing a bucket.

The S3 server is moto's standalone server (`python -m moto.server`, PyPI `moto[server]`), used
because no MinIO server can be installed from PyPI or Debian's packages: a separate process on a
free port of 127.0.0.1 that speaks the S3 HTTP API, started once per run by
`s3_server.shared_server()`. boto3 reaches it over real HTTP, as it would MinIO or R2.
The backend-neutral checks (put/get/delete/exists, missing -> None, unsafe keys refused) run
against S3 too, in test_media_storage.py.
"""

from __future__ import annotations

import io
import sys
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image
from segmind import SegmindClient

from openremix.config import Settings
from openremix.media.s3_storage import S3Storage, S3StorageError
from openremix.media.storage import LocalStorage, new_output_key, open_storage
from openremix.server.wiring import open_output_storage
from tests.support.s3_server import CREDENTIALS, S3TestServer, shared_server, unavailable_reason
from tests.support.servers import TEST_KEY

MODEL = "ideogram-3-remix"
PUBLIC_GRANTEES = {
    "http://acs.amazonaws.com/groups/global/AllUsers",
    "http://acs.amazonaws.com/groups/global/AuthenticatedUsers",
}


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> S3TestServer:
    """The run's S3 test server, with this process's AWS credentials pointing at it."""
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    return shared_server()


@pytest.fixture
def bucket(s3: S3TestServer) -> str:
    return s3.create_bucket()


def s3_storage(s3: S3TestServer, bucket: str, prefix: str = "outputs") -> S3Storage:
    return S3Storage(bucket, prefix, endpoint_url=s3.endpoint_url)


def test_objects_are_private_and_keep_their_content_type_under_the_prefix(
    s3: S3TestServer, bucket: str
) -> None:
    storage = s3_storage(s3, bucket, "/remix/outputs/")
    key = new_output_key("webp")
    storage.put(key, b"RIFF-webp-bytes", "image/webp")
    name = f"remix/outputs/{key}"
    assert s3.object_names(bucket) == [name]
    assert s3.client().head_object(Bucket=bucket, Key=name)["ContentType"] == "image/webp"
    grants = s3.client().get_object_acl(Bucket=bucket, Key=name)["Grants"]
    assert not {grant["Grantee"].get("URI") for grant in grants} & PUBLIC_GRANTEES


def test_what_one_instance_writes_another_reads(s3: S3TestServer, bucket: str) -> None:
    # A worker and an API replica each open the storage from the same setting.
    worker_side = open_storage(f"s3://{bucket}/shared", endpoint_url=s3.endpoint_url)
    api_side = open_storage(f"s3://{bucket}/shared", endpoint_url=s3.endpoint_url)
    key = new_output_key("jpg")
    worker_side.put(key, b"\xff\xd8jpeg", "image/jpeg")
    assert api_side.exists(key)
    assert api_side.get(key) == b"\xff\xd8jpeg"
    api_side.delete(key)
    assert worker_side.get(key) is None


def test_presigned_url_reads_the_object_without_credentials(s3: S3TestServer, bucket: str) -> None:
    storage = s3_storage(s3, bucket)
    key = new_output_key("png")
    storage.put(key, b"\x89PNG-bytes", "image/png")
    url = storage.presigned_url(key, expires=60)
    assert "X-Amz-Signature=" in url  # SigV4, which every S3-compatible service accepts
    answer = httpx.get(url)
    assert answer.status_code == 200
    assert answer.content == b"\x89PNG-bytes"
    with pytest.raises(ValueError):
        storage.presigned_url(key, expires=0)
    with pytest.raises(ValueError):
        storage.presigned_url("../escape.png")


def test_a_missing_bucket_is_an_error_not_a_missing_output(s3: S3TestServer) -> None:
    storage = s3_storage(s3, "openremix-no-such-bucket")
    with pytest.raises(S3StorageError, match="bucket 'openremix-no-such-bucket' does not exist"):
        storage.check()
    key = new_output_key("jpg")
    with pytest.raises(S3StorageError, match="read of s3://openremix-no-such-bucket/outputs/"):
        storage.get(key)
    with pytest.raises(OSError, match="write of"):
        storage.put(key, b"x", "image/jpeg")


def test_storage_url_setting_picks_the_backend(
    s3: S3TestServer, bucket: str, tmp_path: Path
) -> None:
    def settings(url: str = "") -> Settings:
        return Settings(data_dir=tmp_path, storage_url=url, s3_endpoint_url=s3.endpoint_url)

    chosen = open_output_storage(settings(f"s3://{bucket}/outputs"))
    assert isinstance(chosen, S3Storage)
    assert (chosen.bucket, chosen.prefix) == (bucket, "outputs")
    assert chosen.endpoint_url == s3.endpoint_url
    default = open_output_storage(settings())
    assert isinstance(default, LocalStorage) and default.root == tmp_path / "outputs"
    assert default.root.is_dir()
    with pytest.raises(SystemExit, match="bucket 'openremix-no-such-bucket' does not exist"):
        open_output_storage(settings("s3://openremix-no-such-bucket/x"))


def test_s3_without_boto3_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "boto3", None)  # makes `import boto3` fail
    with pytest.raises(ImportError, match=r"pip install 'openremix\[s3\]'"):
        open_storage("s3://bucket/outputs")


def processes_env(s3: S3TestServer, bucket: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    """Settings shared by every process: one SQLite job store, one bucket, no shared folder."""
    return {
        **CREDENTIALS,
        "OPENREMIX_DATABASE_URL": f"sqlite:///{tmp_path / 'jobs' / 'openremix.db'}",
        "OPENREMIX_STORAGE_URL": f"s3://{bucket}/outputs",
        "OPENREMIX_S3_ENDPOINT_URL": s3.endpoint_url,
        **extra,
    }


def remix(image: str) -> dict:
    return {"image": image, "prompt": "old sepia photograph", "rendering_speed": "TURBO",
            "magic_prompt": "OFF", "seed": 7, "output_format": "jpeg"}


def wait_until_loaded(worker, timeout: float = 120) -> None:
    """Until the worker process logs that its engine is loaded (a worker has no /readyz)."""
    deadline = time.monotonic() + timeout
    while "ready (engine" not in worker.log():
        assert worker.proc.poll() is None and time.monotonic() < deadline, worker.log()
        time.sleep(0.1)


def local_outputs(*data_dirs: Path) -> list[Path]:
    return [path for folder in data_dirs for path in folder.glob("outputs/*")]


@pytest.mark.slow
def test_a_workers_output_is_served_from_the_bucket_by_every_api_replica(
    s3: S3TestServer, bucket: str, start_process, tmp_path: Path, astronaut_uri: str
) -> None:
    env = processes_env(s3, bucket, tmp_path)
    # Separate data folders: the only thing the three processes share is the job store and S3.
    dirs = {name: tmp_path / name for name in ("worker", "api-a", "api-b")}
    start_process("worker", env=env, data_dir=dirs["worker"], ready=False)
    api_a = start_process("api", env=env, data_dir=dirs["api-a"])
    api_b = start_process("api", env=env, data_dir=dirs["api-b"])

    job = SegmindClient(api_key=TEST_KEY, base_url=f"{api_a.base_url}/v1").submit_async(
        MODEL, **remix(astronaut_uri))
    result = job.wait(timeout=120, interval=0.1)
    key = result["output"].rsplit("/", 1)[-1]
    assert key.endswith(".jpg")

    stored = s3.client().get_object(Bucket=bucket, Key=f"outputs/{key}")
    assert stored["ContentType"] == "image/jpeg"
    stored_bytes = stored["Body"].read()
    for api in (api_a, api_b):
        answer = httpx.get(f"{api.base_url}/outputs/{key}")
        assert answer.status_code == 200, api.log()
        assert answer.headers["content-type"] == "image/jpeg"
        assert answer.content == stored_bytes
    assert Image.open(io.BytesIO(stored_bytes)).format == "JPEG"
    assert local_outputs(*dirs.values()) == []

    # A sync /v1 call answers with the image bytes, read back from the bucket by the API.
    response = SegmindClient(api_key=TEST_KEY, base_url=f"{api_b.base_url}/v1").run_sync(
        MODEL, **remix(astronaut_uri))
    assert response.content[:3] == b"\xff\xd8\xff"
    assert len(s3.object_names(bucket)) == 2
    assert local_outputs(*dirs.values()) == []


@pytest.mark.slow
def test_expired_jobs_have_their_objects_deleted_from_the_bucket(
    s3: S3TestServer, bucket: str, start_process, tmp_path: Path, astronaut_uri: str
) -> None:
    env = processes_env(s3, bucket, tmp_path, OPENREMIX_RETENTION_SECONDS="8")
    worker = start_process("worker", env=env, data_dir=tmp_path / "worker", ready=False)
    api = start_process("api", env=env, data_dir=tmp_path / "api")
    wait_until_loaded(worker)  # the job must finish well inside its retention
    job = SegmindClient(api_key=TEST_KEY, base_url=f"{api.base_url}/v1").submit_async(
        MODEL, **remix(astronaut_uri))
    result = job.wait(timeout=120, interval=0.1)
    key = result["output"].rsplit("/", 1)[-1]
    assert s3.object_names(bucket) == [f"outputs/{key}"]
    deadline = time.monotonic() + 30  # retention 8 s, then the worker's next sweep (every 2 s)
    while s3.object_names(bucket) and time.monotonic() < deadline:
        time.sleep(0.25)
    assert s3.object_names(bucket) == []
    assert httpx.get(result["output"]).status_code == 404
