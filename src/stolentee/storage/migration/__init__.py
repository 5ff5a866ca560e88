"""Verified, resumable copies of every object from one store to another.

:func:`migrate` copies (:mod:`.copier`), recording each object in a :class:`Manifest`
(:mod:`.manifest`); :func:`plan` and :func:`list_both` say what it would do (:mod:`.plan`);
:func:`delete_source` removes from the source only what the manifest shows verified
(:mod:`.delete`). ``stolentee migrate-storage`` is the command line over this package.
"""

from stolentee.storage.migration.copier import DEFAULT_CONCURRENCY, migrate
from stolentee.storage.migration.delete import (
    DeletePlan,
    DeleteRefusedError,
    check_delete_allowed,
    delete_source,
)
from stolentee.storage.migration.events import ProgressCallback, ProgressEvent, ProgressStatus
from stolentee.storage.migration.manifest import Manifest, ManifestError, ObjectRecord
from stolentee.storage.migration.plan import Listings, MigrationPlan, list_both, plan
from stolentee.storage.migration.report import MigrationReport, ObjectFailure

__all__ = [
    "DEFAULT_CONCURRENCY",
    "DeletePlan",
    "DeleteRefusedError",
    "Listings",
    "Manifest",
    "ManifestError",
    "MigrationPlan",
    "MigrationReport",
    "ObjectFailure",
    "ObjectRecord",
    "ProgressCallback",
    "ProgressEvent",
    "ProgressStatus",
    "check_delete_allowed",
    "delete_source",
    "list_both",
    "migrate",
    "plan",
]
