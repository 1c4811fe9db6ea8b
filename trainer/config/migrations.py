"""Bring config and preset files written by an older version of this program up to date.

Every file this program writes carries `config_version`. When an option is renamed or its
meaning changes, register one step here; the current version is the number of steps plus one,
so the version written and the steps that read old files cannot drift apart. A step turns the
flat dict of one version into the dict of the next. No step exists yet: version 1 is the first.
"""

from __future__ import annotations

from typing import Any, Callable

from ..errors import UserError

Migration = Callable[[dict[str, Any]], dict[str, Any]]

# MIGRATIONS[i] turns a version i + 1 file into a version i + 2 file.
MIGRATIONS: list[Migration] = []


def current_version() -> int:
    """The config_version this program writes (and the newest it reads)."""
    return len(MIGRATIONS) + 1


def register_migration(step: Migration) -> Migration:
    """Add the step from the current version to the next (usable as a decorator)."""
    MIGRATIONS.append(step)
    return step


def rename_option(old: str, new: str) -> Migration:
    """A step for an option renamed from `old` to `new` (a value under `new` is kept)."""

    def rename(data: dict[str, Any]) -> dict[str, Any]:
        if old in data:
            value = data.pop(old)
            data.setdefault(new, value)
        return data

    rename.__name__ = f"rename_{old}_to_{new}"
    return rename


def migrate(data: dict[str, Any], source: str) -> dict[str, Any]:
    """`data` of file `source` in the current version's terms.

    A file without config_version was written by hand or by another program (a kohya_ss GUI
    config) and is read as it stands."""
    if "config_version" not in data:
        return data
    version, newest = data["config_version"], current_version()
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise UserError(f"{source}: config_version {version!r} is not a version number",
                        f"this program writes {newest}; correct it or remove the line")
    if version > newest:
        raise UserError(f"{source} was written by a newer version of this program (config_version "
                        f"{version}; this one reads up to {newest})",
                        "update the program to read it")
    for step in MIGRATIONS[version - 1:]:
        data = step(dict(data))
    return {**data, "config_version": newest}
