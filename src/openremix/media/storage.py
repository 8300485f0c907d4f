"""Blob storage of output images: a protocol, a local-folder store, and unguessable keys.

Output URLs are readable without an API key (CONTRACT.md §2), so a key is the only secret:
`new_output_key` draws 192 random bits. Keys are plain file names (`[A-Za-z0-9_-]+` plus an
optional single extension), which rules out path traversal by construction.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import tempfile
from pathlib import Path
from typing import Protocol, runtime_checkable
from urllib.parse import unquote, urlparse

_KEY = re.compile(r"^[A-Za-z0-9_-]{1,200}(\.[A-Za-z0-9]{1,10})?$")
_EXTENSION = re.compile(r"^[A-Za-z0-9]{1,10}$")
_TEMP_PREFIX = ".tmp-"  # starts with a dot, so never a valid key: half-written files stay hidden
_CONTENT_TYPES = {
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "png": "image/png",
    "webp": "image/webp",
}


@runtime_checkable
class BlobStorage(Protocol):
    """Where outputs live. Keys come from `new_output_key`; values are whole files."""

    def put(self, key: str, data: bytes, content_type: str) -> None:
        """Store `data` under `key`, replacing any earlier value; readers never see a part."""
        ...

    def get(self, key: str) -> bytes | None:
        """The stored bytes, or None if there is nothing under `key`."""
        ...

    def path_for(self, key: str) -> Path | None:
        """A local file holding the value (to serve it without copying), else None."""
        ...

    def delete(self, key: str) -> None:
        """Remove the value under `key`; nothing happens if there is none."""
        ...

    def exists(self, key: str) -> bool:
        """Whether a value is stored under `key`."""
        ...


def validate_key(key: str) -> str:
    """Return `key` if it is a safe storage key, else raise `ValueError`."""
    if not isinstance(key, str) or not _KEY.match(key):
        raise ValueError(
            f"invalid storage key {key!r}: use letters, digits, '_' or '-' and one extension"
        )
    return key


def new_output_key(extension: str, data: bytes | None = None) -> str:
    """A fresh, unguessable key such as `Xy3...Q.jpg` (32 random URL-safe characters).

    With `data`, the key also carries the first 128 bits of its SHA-256 (32 hex digits after
    the random part), so whoever reads it back can check it (`read_verified`) without asking
    the job store."""
    ext = extension.strip().lstrip(".").lower()
    if not _EXTENSION.match(ext):
        raise ValueError(f"invalid extension {extension!r}")
    digest = "" if data is None else _digest(data)
    return f"{secrets.token_urlsafe(24)}{digest}.{ext}"


_DIGEST_HEX = 32
_RANDOM_CHARS = 32
_CARRIES_DIGEST = re.compile(rf"^[A-Za-z0-9_-]{{{_RANDOM_CHARS}}}([0-9a-f]{{{_DIGEST_HEX}}})\.")


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:_DIGEST_HEX]


class OutputUnreadable(Exception):
    """A stored output that cannot be served as the image: `reason` is "missing" (deleted or
    never stored) or "damaged" (its bytes no longer match the checksum in its key)."""

    def __init__(self, key: str, reason: str) -> None:
        what = "is missing from storage" if reason == "missing" else (
            "is damaged in storage (its checksum does not match)")
        super().__init__(f"output {key} {what}")
        self.key = key
        self.reason = reason


def read_verified(storage: BlobStorage, key: str) -> bytes:
    """The output's bytes, checked against the checksum its key carries (keys made before
    checksums were added carry none and are read as they are). Raises `OutputUnreadable`."""
    data = storage.get(key)
    if data is None:
        raise OutputUnreadable(key, "missing")
    carried = _CARRIES_DIGEST.match(key)
    if carried is not None and _digest(data) != carried.group(1):
        raise OutputUnreadable(key, "damaged")
    return data


def content_type_for_key(key: str) -> str:
    """The content type implied by a key's extension (`application/octet-stream` if unknown)."""
    ext = key.rpartition(".")[2].lower() if "." in key else ""
    return _CONTENT_TYPES.get(ext, "application/octet-stream")


class LocalStorage:
    """A folder of files, one per key; writes are atomic (temp file, fsync, rename)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).expanduser()

    def __repr__(self) -> str:
        return f"LocalStorage({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        return self.root / validate_key(key)

    def put(self, key: str, data: bytes, content_type: str) -> None:
        """Write `data` to `<root>/<key>` atomically. The content type follows the extension."""
        target = self._path(key)
        self.root.mkdir(parents=True, exist_ok=True)
        fd, temp_name = tempfile.mkstemp(prefix=_TEMP_PREFIX, dir=self.root)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(temp_name, 0o644)  # mkstemp makes 0600; a separate web server may read it
            os.replace(temp_name, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp_name)
            raise

    def get(self, key: str) -> bytes | None:
        """The file's bytes, or None if it does not exist."""
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            return None

    def path_for(self, key: str) -> Path | None:
        """The file's path if it exists, else None."""
        path = self._path(key)
        return path if path.is_file() else None

    def delete(self, key: str) -> None:
        """Remove the file; a missing file is not an error."""
        with contextlib.suppress(FileNotFoundError):
            self._path(key).unlink()

    def exists(self, key: str) -> bool:
        """Whether the file exists."""
        return self._path(key).is_file()


def open_storage(url_or_path: str | Path, *, endpoint_url: str | None = None) -> BlobStorage:
    """Open the storage a setting names: a folder path, a `file://` URL, or `s3://bucket/prefix`.

    `s3://` opens an S3-compatible bucket (`S3Storage`, needs `pip install 'openremix[s3]'`);
    `endpoint_url` names a service other than AWS (MinIO, R2, ...) and is ignored for folders.
    """
    text = str(url_or_path).strip()
    if not text:
        raise ValueError("storage location is empty")
    if "://" not in text:
        return LocalStorage(Path(text))
    parsed = urlparse(text)
    scheme = parsed.scheme.lower()
    if scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise ValueError(f"file:// storage must be local, got host {parsed.netloc!r}")
        return LocalStorage(Path(unquote(parsed.path)))
    if scheme == "s3":
        from openremix.media.s3_storage import S3Storage  # boto3 is an optional extra

        return S3Storage.from_url(text, endpoint_url=endpoint_url)
    raise ValueError(
        f"unsupported storage scheme {scheme!r}; use a folder path, a file:// or an s3:// URL"
    )
