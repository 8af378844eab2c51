"""The S3-compatible storage backend that settings.STORAGES names when a store is configured.

django-storages does the work. What this adds is the contract the rest of the code already
keeps with the filesystem: a missing object raises FileNotFoundError (final: that image
fails with a reason) and a store that cannot be reached, refuses the credentials or lost
its bucket raises another OSError (transient: uploads are refused with a clear message,
tasks retry). boto's own exceptions never leave this module.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from boto3.exceptions import Boto3Error
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from s3transfer.exceptions import RetriesExceededError, S3DownloadFailedError, S3UploadFailedError
from storages.backends.s3 import S3Storage

# What boto3 and its transfer manager raise besides botocore's ClientError.
TRANSFER_ERRORS = (
    BotoCoreError,
    Boto3Error,
    RetriesExceededError,
    S3DownloadFailedError,
    S3UploadFailedError,
)
# A missing key answers 404 with one of these codes (a HEAD request has no body to carry
# "NoSuchKey", so botocore names it by its status).
MISSING_CODES = {"404", "NoSuchKey", "NotFound"}


class ObjectStoreError(ConnectionError):
    """The object store could not do what was asked; worth trying again later."""


class ObjectStorage(S3Storage):
    """A private bucket (or a prefix of one), written once per key, read with boto3.

    A web request must not hang on a dead store, and a worker's retries are the task's
    business: boto tries each call a few times, briefly, and then gives up.
    """

    CLIENT = Config(
        connect_timeout=5, read_timeout=30, retries={"max_attempts": 3, "mode": "standard"}
    )

    client_config: Config

    def __init__(self, **settings) -> None:
        super().__init__(**settings)
        self.client_config = self.client_config.merge(self.CLIENT)

    @contextmanager
    def _translated(self, what: str, name: str) -> Iterator[None]:
        try:
            yield
        except FileNotFoundError as exc:
            # django-storages' own answer to a 404, which a missing bucket gives too.
            if self.bucket_exists():
                raise
            raise self._no_bucket() from exc
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            if code in MISSING_CODES:
                if self.bucket_exists():
                    raise FileNotFoundError(f"{name!r} is not in the object store") from exc
                raise self._no_bucket() from exc
            detail = error.get("Message") or code
            raise ObjectStoreError(
                f"the object store refused to {what} {name!r} in bucket "
                f"{self.bucket_name!r}: {detail}"
            ) from exc
        except TRANSFER_ERRORS as exc:
            raise ObjectStoreError(f"the object store could not {what} {name!r}: {exc}") from exc

    def _no_bucket(self) -> ObjectStoreError:
        return ObjectStoreError(
            f"the bucket {self.bucket_name!r} cannot be reached or does not exist"
        )

    def bucket_exists(self) -> bool:
        """A missing bucket answers a HEAD with the same bare 404 as a missing key; it is a
        configuration error, never a reason to fail an image for good."""
        try:
            self.connection.meta.client.head_bucket(Bucket=self.bucket_name)
        except (ClientError, BotoCoreError):
            return False
        return True

    def _open(self, name, mode="rb"):
        with self._translated("read", name):
            handle = super()._open(name, mode)
            if "r" in mode:
                # django-storages downloads on the first read(), outside this method: do it
                # here, so that a failure is translated like every other.
                handle.file  # noqa: B018
            return handle

    def _save(self, name, content):
        with self._translated("write", name):
            return super()._save(name, content)

    def delete(self, name) -> None:
        with self._translated("delete", name):
            super().delete(name)

    def exists(self, name) -> bool:
        with self._translated("look up", name):
            return super().exists(name)

    def listdir(self, path):
        with self._translated("list", path):
            return super().listdir(path)

    def size(self, name) -> int:
        with self._translated("measure", name):
            return super().size(name)
