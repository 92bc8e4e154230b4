"""Versioned model directories as TF Serving reads them: MODEL_BASE/<integer>/.

A version is written under a temporary name in MODEL_BASE that no server takes for a
version (".tmp-<version>-XXXX": not an integer), made readable to all, then renamed into
place in one step, so a polling server sees either nothing or the complete version. MODEL_BASE
may be a URI (gs://...): there the rename moves file by file, saved_model.pb last
(`storage.rename`).
"""

from __future__ import annotations

import os
from typing import Callable

from jukebox_tf import storage
from jukebox_tf.errors import JukeboxError


def existing_versions(base: str) -> list[int]:
    """The integer-named sub-folders of `base`, sorted (anything else is not a version)."""
    if not storage.isdir(base):
        return []
    return sorted(int(name) for name in storage.listdir(base) if name.isdigit()
                  and name.isascii() and storage.isdir(os.path.join(base, name)))


def next_version(base: str) -> int:
    """One more than the largest existing version; 1 for a new base."""
    versions = existing_versions(base)
    return versions[-1] + 1 if versions else 1


def _make_readable(path: str) -> None:
    """mkdtemp makes its folder 0700: a server running as another user could not read it.
    (Object stores have no modes: access is the bucket's.)"""
    if storage.is_remote(path):
        return
    for folder, dirs, files in os.walk(path):
        os.chmod(folder, 0o755)
        for name in files:
            full = os.path.join(folder, name)
            os.chmod(full, os.stat(full).st_mode | 0o444)


def write_version(base: str, write: Callable[[str, int], None],
                  version: int | None = None) -> tuple[str, int]:
    """Calls write(tmp_dir, version) to fill a temporary folder in `base`, then renames it to
    base/<version>. Returns (path, version).

    version None: the next free one. A version that exists (or appears meanwhile) is an
    error. If anything fails, the temporary folder is removed and nothing else changes.
    """
    if version is not None and version < 0:
        raise JukeboxError(f"version must be a non-negative integer, got {version}")
    storage.makedirs(base)
    chosen = next_version(base) if version is None else version
    final = os.path.join(base, str(chosen))
    if version is not None and storage.exists(final):
        raise JukeboxError(f"{final} exists: version {version} was exported already (choose "
                           f"another --version, or leave it out for the next one, "
                           f"{next_version(base)})")
    tmp = storage.mkdtemp(f".tmp-{chosen}-", base)
    try:
        write(tmp, chosen)
        _make_readable(tmp)
        # os.rename replaces an empty folder of the same name: never do that. (The version
        # is baked into the model's metadata, so it cannot move on to another number now.)
        if storage.lexists(final):
            raise JukeboxError(f"{final} appeared while exporting (another export at the same "
                               f"time?); nothing was changed: export again")
        storage.rename(tmp, final)
        return final, chosen
    except BaseException:
        storage.rmtree(tmp, ignore_errors=True)
        raise
