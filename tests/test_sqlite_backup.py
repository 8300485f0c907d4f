"""The SQLite file stays whole: a closed store leaves its commits in the database file itself
(not only in `-wal`), and `backup` copies a store in use. (`openremix db backup`: test_cli.)"""

from __future__ import annotations

import shutil
import sqlite3
import uuid
from pathlib import Path

import pytest

from openremix.jobs.model import NewJob
from openremix.jobs.sqlite.backup import backup
from openremix.jobs.sqlite.store import SQLiteJobStore


def _fill(store: SQLiteJobStore, jobs: int) -> None:
    key, _ = store.create_api_key("k", credits=100)
    for _ in range(jobs):
        store.enqueue(NewJob(request_id=str(uuid.uuid4()), model="ideogram-3-remix",
                             api_key_id=key.key_id, params={"prompt": "a cat"}, cost=1.0))


def _jobs_in(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0]


def test_a_closed_store_leaves_its_commits_in_the_database_file(tmp_path: Path) -> None:
    path = tmp_path / "data" / "openremix.db"
    other = SQLiteJobStore(path)  # another process's store keeps the file open
    other.queue_depth()
    store = SQLiteJobStore(path)
    _fill(store, 5)
    store.close()
    alone = tmp_path / "copy" / "openremix.db"  # what a backup of the one file gets
    alone.parent.mkdir()
    shutil.copyfile(path, alone)
    assert _jobs_in(alone) == 5
    assert not path.with_name("openremix.db-wal").stat().st_size  # nothing left behind
    other.close()


def test_backup_copies_a_store_in_use_and_never_overwrites_unasked(tmp_path: Path) -> None:
    path = tmp_path / "openremix.db"
    store = SQLiteJobStore(path)
    _fill(store, 3)
    target = tmp_path / "backups" / "copy.db"
    assert backup(path, target) == target.stat().st_size
    assert _jobs_in(target) == 3
    _fill(store, 1)
    with pytest.raises(FileExistsError, match="--force"):
        backup(path, target)
    assert _jobs_in(target) == 3
    backup(path, target, overwrite=True)
    assert _jobs_in(target) == 4
    assert sorted(p.name for p in target.parent.iterdir()) == ["copy.db"]  # no partial files
    store.close()
    with pytest.raises(FileNotFoundError):
        backup(tmp_path / "none.db", tmp_path / "x.db")


def test_the_operators_commands_follow_a_sqlite_database_url(tmp_path: Path) -> None:
    """`openremix db backup` and `keys` use the store OPENREMIX_DATABASE_URL names, not the data
    folder's file (backup used to copy `data_dir/openremix.db` whatever the URL said)."""
    from openremix.config import Settings
    from openremix.server import store_admin

    elsewhere = tmp_path / "elsewhere" / "jobs.db"
    elsewhere.parent.mkdir()
    settings = Settings(data_dir=tmp_path / "data", database_url=f"sqlite:///{elsewhere}")
    with pytest.raises(store_admin.AdminError, match=r"no jobs\.db"):
        store_admin.require_existing(settings)
    store = SQLiteJobStore(elsewhere)
    _fill(store, 2)
    store.close()
    store_admin.require_existing(settings)
    assert store_admin.store_name(settings) == str(elsewhere)
    target = tmp_path / "copy.db"
    assert str(elsewhere) in store_admin.backup_store(settings, target, overwrite=False)
    assert _jobs_in(target) == 2
    assert not (tmp_path / "data" / "openremix.db").exists()
