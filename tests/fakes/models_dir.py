"""A models directory as a fresh clone's machine has it: every file installed in the default one
(``STOLENTEE_MODELS_DIR``, linked), without the models built on this machine (the int8 builds of
``stolentee models quantize``). A build would change what a tier serves (``fast`` is u2netp's int8
build once one passed), and the tests check u2netp's own masks."""

from __future__ import annotations

from pathlib import Path

from stolentee.config import EngineSettings
from stolentee.removal import models
from stolentee.removal.model_record import record_path


def without_local_builds(folder: Path) -> Path:
    """``folder`` (a new, empty directory) with links to the default directory's model files,
    the built ones and their records left out."""
    source = EngineSettings().models_dir.expanduser()
    built: set[str] = set()
    for spec in models.MODELS.values():
        if spec.derived_from is not None:
            path = models.model_path(source, spec)
            built |= {path.name, record_path(path).name}
    for path in sorted(source.iterdir()) if source.is_dir() else []:
        if path.is_file() and path.name not in built:
            (folder / path.name).symlink_to(path)
    return folder
