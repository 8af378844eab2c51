"""Prove, from this host, that the media and models storages work: write, read back and
delete a probe object in each. Run it on every web and worker host after configuring them
(docker-compose.yml's object-store profile runs it before anything starts)."""

import uuid

from django.core.files.base import ContentFile
from django.core.files.storage import storages
from django.core.management.base import BaseCommand, CommandError, CommandParser

from leukweb.storage import ObjectStorage

STORAGES = {"default": "media", "models": "models"}


def _where(storage) -> str:
    if isinstance(storage, ObjectStorage):
        endpoint = storage.endpoint_url or "AWS S3"
        return f"bucket {storage.bucket_name!r}, prefix {storage.location!r}, at {endpoint}"
    return f"folder {storage.location}"


def _bucket_ensure(storage: ObjectStorage) -> bool:
    """Create the bucket when it does not exist (private: no ACL, no policy); True if made."""
    client = storage.connection.meta.client
    if storage.bucket_exists():
        return False
    options = {}
    if storage.region_name and storage.region_name != "us-east-1":
        options["CreateBucketConfiguration"] = {"LocationConstraint": storage.region_name}
    client.create_bucket(Bucket=storage.bucket_name, **options)
    return True


class Command(BaseCommand):
    help = "Write, read back and delete a probe object in the media and models storages."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--create-bucket",
            action="store_true",
            help="create the S3 bucket when it does not exist yet (first start only)",
        )

    def handle(self, *args, create_bucket: bool = False, **options) -> None:
        for alias, label in STORAGES.items():
            storage = storages[alias]
            if create_bucket and isinstance(storage, ObjectStorage) and _bucket_ensure(storage):
                self.stdout.write(f"created bucket {storage.bucket_name!r}")
            probe = f".leukweb-check/{uuid.uuid4().hex}"
            content = uuid.uuid4().bytes
            try:
                name = storage.save(probe, ContentFile(content))
                try:
                    with storage.open(name, "rb") as fh:
                        if fh.read() != content:
                            raise CommandError(f"{label}: read back other bytes than written")
                finally:
                    storage.delete(name)
            except OSError as exc:
                raise CommandError(f"{label} storage ({_where(storage)}) failed: {exc}") from exc
            self.stdout.write(f"{label}: ok ({_where(storage)})")
