"""Per-user loops: one function per user with per-user artifacts, resumable, sharded, merged.

    from runtime.users import add_shard_arguments, run_users, shard_from_args
    predictions = run_users("runs/oppu/LaMP_4", users, train_and_predict, key={"model": ..., "lr": ...},
                            shard=shard_from_args(args), task="LaMP_4")

``work(user, folder)`` writes the user's artifacts (an adapter folder, ...) into ``folder`` and returns the
user's predictions ``{example id: output}`` (or None). ``folder`` is a temporary name that is renamed when
the user is done, so artifacts must not record their own path. Layout under the root::

    users.json                 manifest {"task", "key", "users"}: every shard writes the same one
    .lock                      held while a process writes the files above or below the users
    users/<user>/              the user's artifacts
    users/<user>/done.json     {"user", "key", "predictions"}: the completion marker, written last
    predictions.json           every user's predictions in the manifest's user order (LaMP format), once
                               every user is done (by the last shard to finish, or python -m runtime.merge)

A user's folder is built under a temporary name and renamed into place after its marker is written, so
``users/<user>/`` exists only complete; a rerun skips the users whose marker carries the same key (the
fingerprint of everything that changes their artifacts) and redoes the others. Shards take users by
position (user i belongs to shard i mod N), so N shards together do exactly the users of one.
"""
from __future__ import annotations

import argparse
import fcntl
import logging
import os
import re
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from tqdm.auto import tqdm

from data.errors import InputError, input_error
from data.fingerprint import fingerprint
from data.io import atomic_write_json, read_json
from runtime.run_folder import PREDICTIONS_FILE

log = logging.getLogger("lampkit.runtime")

MANIFEST_FILE = "users.json"
USERS_DIR = "users"
DONE_FILE = "done.json"
LOCK_FILE = ".lock"
_SAFE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,99}")

Work = Callable[[str, Path], "Mapping[str, str] | None"]


@dataclass(frozen=True)
class Shard:
    """This process's part of the users: every ``count``-th user starting at ``index``."""
    index: int = 0
    count: int = 1

    def users(self, users: Sequence[str]) -> list[str]:
        return [user for position, user in enumerate(users) if position % self.count == self.index]

    def __str__(self) -> str:
        return f"shard {self.index} of {self.count}"


def add_shard_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("sharding (users split over processes or machines)")
    group.add_argument("--num_shards", type=int, default=None,
                       help="split the users into N shards (default: $WORLD_SIZE under torchrun, else 1)")
    group.add_argument("--shard_id", type=int, default=None,
                       help="the shard this process runs, 0..N-1 (default: $RANK under torchrun, else 0)")


def shard_from_args(args: argparse.Namespace) -> Shard:
    return resolve_shard(args.num_shards, args.shard_id)


def resolve_shard(num_shards: int | None = None, shard_id: int | None = None,
                  environ: Mapping[str, str] = os.environ) -> Shard:
    """The shard from the flags, else from torchrun's WORLD_SIZE and RANK, else the only one."""
    count = num_shards if num_shards is not None else _env_int(environ, "WORLD_SIZE", 1)
    index = shard_id if shard_id is not None else _env_int(environ, "RANK", 0)
    if count < 1:
        raise InputError(f"--num_shards must be at least 1, got {count}")
    if not 0 <= index < count:
        raise InputError(f"--shard_id must be in 0..{count - 1} with {count} shard(s), got {index}")
    return Shard(index, count)


def _env_int(environ: Mapping[str, str], name: str, default: int) -> int:
    value = environ.get(name)
    if value is None or value == "":
        return default
    if not value.isdigit():
        raise InputError(f"environment variable {name} must be a whole number, got {value!r}")
    return int(value)


def user_folder(root: str | os.PathLike, user: str) -> Path:
    """``<root>/users/<user>``; ids that are not safe file names get a cleaned name plus their fingerprint."""
    name = user if _SAFE_NAME.fullmatch(user) else \
        f"{re.sub(r'[^A-Za-z0-9_.-]', '_', user)[:80].lstrip('.')}-{fingerprint(user, 10)}"
    return Path(root) / USERS_DIR / name


def run_users(root: str | os.PathLike, users: Sequence[str], work: Work, key: Any = None,
              shard: Shard = Shard(), task: str | None = None, desc: str = "users") -> dict[str, Any]:
    """Run ``work`` for this shard's users that are not done yet; return ``{user: predictions}`` of the
    shard's users. When every user of the manifest is done, also write the merged ``predictions.json``
    (``task`` given)."""
    root = Path(root)
    users = [str(user) for user in users]
    if len(set(users)) != len(users):
        raise ValueError("users must be distinct")
    run_key = fingerprint(key)
    manifest = {"task": task, "key": run_key, "users": users}
    path = root / MANIFEST_FILE
    with root_lock(root):
        if path.is_file() and read_json(path) != manifest:
            log.info("%s: other users or settings than the last run; users whose settings changed are redone", path)
        atomic_write_json(path, manifest)

    mine = shard.users(users)
    for user in mine:   # what a run killed in the middle of a user left (each user has one shard)
        _remove_partial(root, user)
    results = {user: done_marker(root, user, run_key) for user in mine}
    pending = [user for user in mine if results[user] is None]
    log.info("%s: %d users, %d done, %d to run", shard, len(mine), len(mine) - len(pending), len(pending))
    with tqdm(total=len(mine), initial=len(mine) - len(pending), desc=desc, unit="user") as bar:
        for user in pending:
            results[user] = _run_user(root, user, work, run_key)
            bar.update(1)
    if all(done_marker(root, user, run_key) is not None for user in users):
        merge_users(root)
    else:
        log.info("%s finished; run `python -m runtime.merge %s` once every shard has", shard, root)
    return {user: results[user]["predictions"] for user in mine}


def done_marker(root: Path, user: str, run_key: str) -> dict | None:
    """The user's completion marker when the user is done with these settings, else None."""
    path = user_folder(root, user) / DONE_FILE
    if not path.is_file():
        return None
    try:
        marker = read_json(path)
    except InputError:
        return None
    is_this_run = isinstance(marker, dict) and marker.get("user") == user and marker.get("key") == run_key
    return marker if is_this_run else None


def _run_user(root: Path, user: str, work: Work, run_key: str) -> dict:
    final = user_folder(root, user)
    staging = final.parent / f".{final.name}.partial-{os.getpid()}"
    staging.mkdir(parents=True)
    try:
        predictions = work(user, staging)
        marker = {"user": user, "key": run_key, "predictions": None if predictions is None else dict(predictions)}
        atomic_write_json(staging / DONE_FILE, marker)
        if final.exists():      # done with other settings: replaced
            shutil.rmtree(final)
        os.replace(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return marker


def merge_users(root: str | os.PathLike, sources: Sequence[str | os.PathLike] = ()) -> Path | None:
    """Check that every user of ``root``'s manifest is done and write the merged predictions.json.

    ``sources``: roots of shards that ran elsewhere (same manifest); their finished user folders are
    copied into ``root`` first. Returns the predictions file (None when the manifest names no task).
    """
    with root_lock(root):
        return _merge(Path(root), [Path(source) for source in sources])


def _merge(root: Path, sources: Sequence[Path]) -> Path | None:
    manifest = _merged_manifest(root, sources)
    run_key, users = manifest["key"], manifest["users"]
    for source in sources:
        if source.resolve() == root.resolve():
            continue
        for user in users:
            if done_marker(root, user, run_key) is None and done_marker(source, user, run_key) is not None:
                _copy_folder(user_folder(source, user), user_folder(root, user))
    markers = [done_marker(root, user, run_key) for user in users]
    missing = [user for user, marker in zip(users, markers) if marker is None]
    if missing:
        raise input_error(root, f"{len(missing)} of {len(users)} users are not done yet, e.g. {missing[0]!r} "
                                f"(run the missing shards, or pass their folders with --from)")
    for user in users:      # every user is done: a temporary folder is a leftover of a killed run or copy
        _remove_partial(root, user)
    if manifest["task"] is None:
        return None
    from data.loaders import write_predictions

    merged: dict[str, str] = {}
    for marker in markers:
        for example_id, output in (marker["predictions"] or {}).items():
            if example_id in merged:
                raise input_error(user_folder(root, marker["user"]) / DONE_FILE,
                                  "prediction id also given by an earlier user", record=example_id)
            merged[example_id] = output
    path = write_predictions(root / PREDICTIONS_FILE, manifest["task"], merged)
    log.info("merged %d users' predictions into %s", len(users), path)
    return path


@contextmanager
def root_lock(root: str | os.PathLike) -> Iterator[None]:
    """Hold the run's lock (re-entrant within a process). Every process writes the run's own files (users.json,
    predictions.json, scores.json) holding it, so the temp files of such a write left by a killed process are
    removed here, and shards sharing the folder never write them at once."""
    root = Path(root).resolve()
    if root in _HELD_LOCKS:
        yield
        return
    root.mkdir(parents=True, exist_ok=True)
    with open(root / LOCK_FILE, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        _HELD_LOCKS.add(root)
        try:
            for leftover in root.glob(".*.tmp"):      # data.io.atomic_open's temp files
                leftover.unlink()
            yield
        finally:
            _HELD_LOCKS.discard(root)
            fcntl.flock(handle, fcntl.LOCK_UN)


_HELD_LOCKS: set[Path] = set()


def _remove_partial(root: Path, user: str) -> None:
    """Remove the temporary folders of ``user`` (the user's work or a copy, cut by a kill)."""
    final = user_folder(root, user)
    for leftover in final.parent.glob(f".{final.name}.partial-*"):
        shutil.rmtree(leftover)


def _merged_manifest(root: Path, sources: Sequence[Path]) -> dict:
    """The manifest shared by ``root`` (when it has one) and every source; they must agree."""
    paths = [path / MANIFEST_FILE for path in (root, *sources) if (path / MANIFEST_FILE).is_file()]
    if not paths:
        raise input_error(root / MANIFEST_FILE, "file not found (not the root of a per-user run)")
    manifest = read_json(paths[0])
    if not isinstance(manifest, dict) or not isinstance(manifest.get("users"), list) or "key" not in manifest:
        raise input_error(paths[0], 'expected {"task", "key", "users"}')
    for path in paths[1:]:
        if read_json(path) != manifest:
            raise input_error(path, f"another run than {paths[0]} (other users, settings or task)")
    if not (root / MANIFEST_FILE).is_file():
        atomic_write_json(root / MANIFEST_FILE, manifest)
    return manifest


def _copy_folder(source: Path, target: Path) -> None:
    """Copy a finished user folder in with one rename, like a run would have left it."""
    staging = target.parent / f".{target.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(source, staging)
    if target.exists():
        shutil.rmtree(target)
    os.replace(staging, target)
