"""Writing files to a Django storage so that a failed write leaves nothing behind.

Django's FileSystemStorage keeps the empty or partial file of a write that failed (a full
disk, an I/O error) and raises without telling the caller its name, so the caller's
clean-up cannot find it. Here the name is settled before the write, and a failure
deletes exactly that name: it holds for any storage, whether or not the backend keeps
partial objects.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from django.core.files import File
from django.core.files.storage import Storage
from django.db.models import FileField, Model

logger = logging.getLogger(__name__)


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
