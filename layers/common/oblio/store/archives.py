"""The adapter for access-export archives in S3: a stream written into a multipart upload
(memory bounded by a small spool whatever the archive's size), reads of the subject's files
and of the export's parts in the work bucket as streams, and presigned downloads.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import tempfile
from collections.abc import Iterator
from contextvars import ContextVar
from types import TracebackType
from typing import IO, Any

from oblio.core.settings import get_settings
from oblio.store import aws
from oblio.store.objects import encryption_args, presign, put_encrypted

MiB = 1024 * 1024
#: what a part may hold in memory before the spool moves it to a temporary file
SPOOL_BYTES = MiB
CHUNK = 256 * 1024
_MISSING = ("NoSuchKey", "404", "NotFound", "NoSuchVersion")


def _spool() -> IO[bytes]:
    # one part's bytes; the writer closes it when the part is sent
    return tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)


class MultipartWriter:
    """A write-only stream into one S3 object (SSE-KMS), sent in parts of `part_size` bytes.

    `zipfile` writes into it as into a file that cannot seek (so it writes data
    descriptors). A part is spooled (in memory up to SPOOL_BYTES, then in a temporary file)
    and uploaded when it is full; leaving the `with` block completes the upload, or aborts it
    when an exception leaves. The SHA-256 of everything written is kept for the record."""

    def __init__(self, bucket: str, key: str, *, part_size: int, content_type: str,
                 tags: dict[str, str] | None = None, filename: str | None = None) -> None:
        self.bucket, self.key, self.part_size = bucket, key, max(part_size, 5 * MiB)
        self._s3 = aws.bucket_client(bucket)
        extra = encryption_args(content_type, tags, filename)
        self._upload_id = self._s3.create_multipart_upload(Bucket=bucket, Key=key,
                                                           **extra)["UploadId"]
        self._parts: list[dict[str, Any]] = []
        self._spool: IO[bytes] = _spool()
        self._held = 0
        self._size = 0
        self._sha = hashlib.sha256()

    # the file protocol zipfile uses
    def write(self, data: bytes) -> int:
        self._spool.write(data)
        self._sha.update(data)
        self._held += len(data)
        self._size += len(data)
        if self._held >= self.part_size:
            self._send()
        return len(data)

    def tell(self) -> int:
        return self._size

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass  # leaving the `with` block completes (or aborts) the upload

    @property
    def size(self) -> int:
        return self._size

    @property
    def sha256(self) -> str:
        return self._sha.hexdigest()

    @property
    def parts(self) -> int:
        return len(self._parts)

    def _send(self) -> None:
        number = len(self._parts) + 1
        self._spool.seek(0)
        resp = self._s3.upload_part(Bucket=self.bucket, Key=self.key, UploadId=self._upload_id,
                                    PartNumber=number, Body=self._spool,
                                    ContentLength=self._held)
        part = {"PartNumber": number, "ETag": resp["ETag"]}
        for checksum in ("ChecksumCRC32", "ChecksumCRC32C", "ChecksumSHA1", "ChecksumSHA256"):
            if checksum in resp:
                part[checksum] = resp[checksum]
        self._parts.append(part)
        self._spool.close()
        self._spool = _spool()
        self._held = 0

    def __enter__(self) -> MultipartWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            if exc_type is None:
                if self._held or not self._parts:
                    self._send()
                self._s3.complete_multipart_upload(
                    Bucket=self.bucket, Key=self.key, UploadId=self._upload_id,
                    MultipartUpload={"Parts": self._parts})
            else:
                self._s3.abort_multipart_upload(Bucket=self.bucket, Key=self.key,
                                                UploadId=self._upload_id)
        finally:
            self._spool.close()


def open_object(bucket: str, key: str) -> tuple[Iterator[bytes], int] | None:
    """The object's bytes as a stream of chunks and its size; None when S3 does not hold it
    (no such key, or its latest version is a delete marker)."""
    s3 = aws.bucket_client(bucket)
    try:
        resp = s3.get_object(Bucket=bucket, Key=key)
    except s3.exceptions.ClientError as exc:
        if exc.response["Error"]["Code"] in _MISSING:
            return None
        raise
    return resp["Body"].iter_chunks(CHUNK), int(resp["ContentLength"])


def exists(bucket: str, key: str) -> bool:
    s3 = aws.bucket_client(bucket)
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except s3.exceptions.ClientError as exc:
        if exc.response["Error"]["Code"] in _MISSING:
            return False
        raise
    return True


#: at most this many bytes of work files are held in an invocation's memory; a part past it
#: goes to the work bucket as outside `holding_work_files` (a subject's items may be large)
HELD_BYTES = 32 * MiB
#: the work files of the invocation that holds them (`holding_work_files`), by key
_held: ContextVar[dict[str, bytes] | None] = ContextVar("held_work_files", default=None)


@contextlib.contextmanager
def holding_work_files() -> Iterator[None]:
    """The work files written in the block stay in this invocation's memory instead of
    going to the work bucket (a PUT each), up to `HELD_BYTES` (the rest go to the bucket),
    and are read back from there: for a small export collected and packaged in one
    invocation, whose outcomes are recorded only once it is packaged (an invocation that
    fails leaves no collected part recorded, so its retry collects them again, and writes
    again any part it wrote to the bucket). Nothing is held once the block is left."""
    token = _held.set({})
    try:
        yield
    finally:
        _held.reset(token)


def put_work_file(key: str, body: IO[bytes], size: int, content_type: str) -> None:
    """One file of a running request (an export's part) into the work bucket, SSE-KMS, or
    into the invocation's memory inside `holding_work_files`."""
    held = _held.get()
    if held is not None and sum(map(len, held.values())) + size <= HELD_BYTES:
        body.seek(0)
        held[key] = body.read(size)
        return
    put_encrypted(get_settings().bucket("work"), key, body, content_type=content_type,
                  size=size)


def work_chunks(key: str) -> Iterator[bytes]:
    """A work-bucket object's bytes, streamed."""
    body = aws.client("s3").get_object(Bucket=get_settings().bucket("work"), Key=key)["Body"]
    yield from body.iter_chunks(CHUNK)


def work_lines(key: str) -> Iterator[bytes]:
    """A work file's lines (JSON lines), streamed from the work bucket, or from memory when
    this invocation holds it."""
    held = _held.get()
    if held is not None and key in held:
        yield from (line.rstrip(b"\r\n") for line in io.BytesIO(held[key])
                    if line.strip(b"\r\n"))
        return
    body = aws.client("s3").get_object(Bucket=get_settings().bucket("work"), Key=key)["Body"]
    for line in body.iter_lines(CHUNK):
        if line:
            yield line


def presign_get(bucket: str, key: str, seconds: int, filename: str) -> str:
    """A URL that GETs the object for `seconds`, saved under `filename` by a browser."""
    return presign("get_object", bucket, key, seconds, filename)
