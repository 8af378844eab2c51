"""Writing files to a Django storage so that a failed write leaves nothing behind.

Django's FileSystemStorage keeps the empty or partial file of a write that failed (a full
disk, an I/O error) and raises without telling the caller its name, so the caller's
clean-up cannot find it. Here the name is settled before the write, and a failure
deletes exactly that name: it holds for any storage, whether or not the backend keeps
partial objects.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from django.core.files import File
from django.core.files.storage import Storage
from django.db.models import FileField, Model

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StorageTrouble:
    """What went wrong with the storage, for the person whose request failed."""

    code: str
    what: str


_TROUBLES = {
    errno.ENOSPC: StorageTrouble("storage_full", "The image storage is full"),
    errno.EDQUOT: StorageTrouble("storage_full", "The image storage is full"),
    errno.EROFS: StorageTrouble(
        "storage_read_only", "The image storage cannot be written (it is read-only)"
    ),
    errno.EIO: StorageTrouble("storage_unavailable", "The image storage failed"),
    errno.EACCES: StorageTrouble("storage_unavailable", "The image storage refused the write"),
    errno.EPERM: StorageTrouble("storage_unavailable", "The image storage refused the write"),
}


def storage_trouble(exc: BaseException) -> StorageTrouble | None:
    """The storage trouble an OSError names by its errno (a disk's), else None (an object
    store's errors carry none: they are said in general words)."""
    return _TROUBLES.get(exc.errno) if isinstance(exc, OSError) and exc.errno else None


def file_save(storage: Storage, name: str, content: File, *, max_length: int | None = None) -> str:
    """Save ``content`` under ``name`` and return the stored name; on failure, remove what
    the failed write left and raise.

    ``name`` must be new (callers put a UUID in it): the storage's own pick of an available
    name is made first, so the name deleted after a failure is the one written, never a
    file that another request stored.
    """
    target = storage.get_available_name(storage.generate_filename(name), max_length=max_length)
    try:
        return storage.save(target, content, max_length=max_length)
    except BaseException:
        files_delete(storage, [target])
        raise


def field_file_save(instance: Model, field_name: str, content: File) -> str:
    """``instance.<field>.save(..., save=False)`` through file_save: the name comes from the
    field's ``upload_to``, and a failed write leaves no file."""
    field = instance._meta.get_field(field_name)
    assert isinstance(field, FileField)
    name = field.generate_filename(instance, content.name or field_name)
    stored = file_save(field.storage, name, content, max_length=field.max_length)
    setattr(instance, field.attname, stored)
    return stored


def files_delete(storage: Storage, names: Iterable[str]) -> list[str]:
    """Delete these files where they exist; return the names that could not be deleted.

    Runs while an earlier error is being handled (a full disk, a lost database), so a
    failure here is logged with the name an operator has to remove, never raised over it.
    """
    left = []
    for name in names:
        try:
            storage.delete(name)
        except Exception:
            logger.exception("could not delete %s after a failed write; remove it by hand", name)
            left.append(name)
    return left
