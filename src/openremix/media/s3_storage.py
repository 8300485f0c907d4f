"""Output storage in an S3-compatible bucket (AWS S3, MinIO, Cloudflare R2, Ceph RGW, ...).

Every API replica and worker that names the same `s3://bucket/prefix` sees the same outputs, so
a file written by one worker is readable through any replica. Objects are written private (no
ACL is sent: the bucket's own policy applies) and are served by the API reading them back, never
by redirecting to the bucket. Credentials come from boto3's own chain (`AWS_ACCESS_KEY_ID` /
`AWS_SECRET_ACCESS_KEY`, `AWS_PROFILE`, `~/.aws`, instance roles); the region from `AWS_REGION`
or `AWS_DEFAULT_REGION` unless given. boto3 is an install extra: `pip install 'openremix[s3]'`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from openremix.media.storage import content_type_for_key, validate_key

INSTALL_HINT = "s3:// storage needs boto3: pip install 'openremix[s3]'"
_MISSING_CODES = frozenset({"404", "NoSuchKey", "NotFound"})
_MAX_PRESIGN_SECONDS = 7 * 24 * 3600  # the longest SigV4 allows


class S3StorageError(OSError):
    """A call to the S3-compatible service failed (not a missing key: that is None or False)."""


def _load_boto3() -> tuple[Any, Any, tuple[type[Exception], ...]]:
    """boto3, botocore's `Config`, and the SDK's error base classes; a sentence if missing."""
    try:
        import boto3
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc
    return boto3, Config, (BotoCoreError, ClientError)


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def parse_s3_url(url: str) -> tuple[str, str]:
    """`s3://bucket/some/prefix` -> (`bucket`, `some/prefix`); `ValueError` with a sentence."""
    parsed = urlparse(url.strip())
    if parsed.scheme.lower() != "s3":
        raise ValueError(f"not an s3:// URL: {url!r}")
    if parsed.username or parsed.password:
        raise ValueError(
            "put no credentials in the s3:// URL; set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY (or another source boto3 reads) instead"
        )
    if parsed.query or parsed.fragment:
        raise ValueError(f"an s3:// URL takes no query or fragment: {url!r}")
    bucket = parsed.netloc
    if not bucket:
        raise ValueError(f"the s3:// URL names no bucket: {url!r} (use s3://bucket/prefix)")
    return bucket, parsed.path.strip("/")


class S3Storage:
    """One bucket (and an optional key prefix) of an S3-compatible service, as `BlobStorage`.

    `endpoint_url` points at a service other than AWS (e.g. `http://minio:9000`); such services
    get path-style addressing (`endpoint/bucket/key`), which they all accept, and checksums
    only where the protocol requires them (several do not accept boto3's newer defaults).
    `client` replaces the boto3 client that would be made (it must be an S3 client).
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        client: Any = None,
    ) -> None:
        if not bucket or "/" in bucket:
            raise ValueError(f"invalid bucket name {bucket!r}")
        boto3, config_class, self._sdk_errors = _load_boto3()
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint_url = endpoint_url or None
        if client is None:
            options: dict[str, Any] = {
                "signature_version": "s3v4",
                "retries": {"max_attempts": 4, "mode": "standard"},
                "connect_timeout": 5,
                "read_timeout": 30,
                "max_pool_connections": 32,  # the API reads from many threads at once
            }
            if self.endpoint_url:
                options["s3"] = {"addressing_style": "path"}
                options["request_checksum_calculation"] = "when_required"
                options["response_checksum_validation"] = "when_required"
            # A session of its own: sessions are not thread-safe, the client made from one is.
            client = boto3.session.Session().client(
                "s3",
                endpoint_url=self.endpoint_url,
                region_name=region or None,
                config=config_class(**options),
            )
        self._client = client

    @classmethod
    def from_url(cls, url: str, *, endpoint_url: str | None = None) -> S3Storage:
        """The storage an `s3://bucket/prefix` setting names."""
        bucket, prefix = parse_s3_url(url)
        return cls(bucket, prefix, endpoint_url=endpoint_url)

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def __repr__(self) -> str:
        endpoint = f", endpoint_url={self.endpoint_url!r}" if self.endpoint_url else ""
        return f"S3Storage({self.url!r}{endpoint})"

    def object_key(self, key: str) -> str:
        """The object's name in the bucket: `<prefix>/<key>` (the key checked first)."""
        validate_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _failure(self, action: str, key: str, exc: Exception) -> S3StorageError:
        where = f"{self.url}/{key}" if key else self.url
        endpoint = f" at {self.endpoint_url}" if self.endpoint_url else ""
        return S3StorageError(f"S3 {action} of {where}{endpoint} failed: {exc}")

    def put(self, key: str, data: bytes, content_type: str) -> None:
        """Upload `data` as one object; S3 makes a PUT visible whole or not at all."""
        name = self.object_key(key)
        try:
            self._client.put_object(
                Bucket=self.bucket,
                Key=name,
                Body=data,
                ContentType=content_type or content_type_for_key(key),
            )
        except self._sdk_errors as exc:
            raise self._failure("write", key, exc) from exc

    def get(self, key: str) -> bytes | None:
        """The object's bytes, or None if there is no such object."""
        name = self.object_key(key)
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=name)
            with response["Body"] as body:
                return body.read()
        except self._sdk_errors as exc:
            if _error_code(exc) in _MISSING_CODES:
                return None
            raise self._failure("read", key, exc) from exc

    def path_for(self, key: str) -> Path | None:
        """Always None: objects have no local path (callers read them with `get`)."""
        validate_key(key)
        return None

    def delete(self, key: str) -> None:
        """Remove the object; S3 answers a delete of a missing object with success too."""
        name = self.object_key(key)
        try:
            self._client.delete_object(Bucket=self.bucket, Key=name)
        except self._sdk_errors as exc:
            if _error_code(exc) in _MISSING_CODES:
                return
            raise self._failure("delete", key, exc) from exc

    def exists(self, key: str) -> bool:
        """Whether the object exists (a HEAD request)."""
        name = self.object_key(key)
        try:
            self._client.head_object(Bucket=self.bucket, Key=name)
        except self._sdk_errors as exc:
            if _error_code(exc) in _MISSING_CODES:
                return False
            raise self._failure("lookup", key, exc) from exc
        return True

    def presigned_url(self, key: str, expires: int = 3600) -> str:
        """A URL that reads the object without credentials for `expires` seconds.

        For clients that may fetch from the bucket directly; the API itself never redirects.
        """
        if not 1 <= expires <= _MAX_PRESIGN_SECONDS:
            raise ValueError(f"expires must be 1..{_MAX_PRESIGN_SECONDS} seconds, got {expires}")
        name = self.object_key(key)
        try:
            return str(
                self._client.generate_presigned_url(
                    "get_object",
                    Params={"Bucket": self.bucket, "Key": name},
                    ExpiresIn=expires,
                )
            )
        except self._sdk_errors as exc:
            raise self._failure("presigning", key, exc) from exc

    def check(self) -> None:
        """Fail now, with a sentence, if the bucket cannot be reached with these credentials."""
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except self._sdk_errors as exc:
            code = _error_code(exc)
            if code in ("404", "NoSuchBucket", "NotFound"):
                detail = f"bucket {self.bucket!r} does not exist"
            elif code in ("403", "AccessDenied"):
                detail = f"access to bucket {self.bucket!r} denied: check the AWS credentials"
            else:
                detail = str(exc)
            raise self._failure("check", "", RuntimeError(detail)) from exc
