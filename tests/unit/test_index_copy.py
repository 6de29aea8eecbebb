"""`pocket index copy` (storage/index/copy.py): every table moved between backends, resumable, verified."""
from __future__ import annotations

import random

import pytest

from storage.index import migrations, repairs
from storage.index.backend import MetadataIndexError
from storage.index.copy import CopyMismatch, copy_index
from storage.index.index import Index
from storage.index.lmdb_backend import LmdbBackend
from storage.index.pg_backend import PgBackend
from storage.index.uploads import UploadTxn
from storage.index.versions import VersionTxn
from storage.objects.ids import new_id


@pytest.fixture
def other(index_backend, request, tmp_path):
    """An empty index on the backend that is not the one under test (copies go across)."""
    if index_backend == "postgres":
        index = Index(LmdbBackend(str(tmp_path / "other")))
    else:
        index = Index(PgBackend(request.getfixturevalue("pg_server").create_database()))
    yield index
    index.close()


def _load(ix: Index, objects: int = 700) -> None:
    rng = random.Random(7)
    ix.create_bucket("b", {"owner": "o", "versioning": "Enabled"})
    long_keys = [("long/" + "é" * 250 + f"{i}").ljust(750, "z") for i in range(5)]   # 1,000 bytes each
    keys = [f"k/{i:04d}" for i in range(objects)] + long_keys

    def fill(ops):
        for k in keys:
            rec = {"version_id": new_id(), "etag": rng.randbytes(8).hex(), "size": rng.randrange(1 << 20),
                   "versioned": True, "bucket": "b", "key": k, "created": 1.0}
            ops.put_object("b", k, rec)
            VersionTxn(ops).put("b", k, rec)
        UploadTxn(ops).create_upload("b", "up", {"upload_id": new_id(), "bucket": "b", "key": "up"})
        repairs.add(ops, {"bucket": "b", "key": keys[0], "version_id": new_id(), "volume": "v", "k": 4, "m": 2},
                    {1: ("missing", "gone")}, "scrub", 2.0)
        ops.put_volumes([{"id": "w6-0000", "disks": list("abcdef")}])
        ops.put_meta("volumes.generation", 3)
        migrations.set_ranges(ops, "b", [("", "k/0300"), ("k/0300", None)])
        migrations.mark_dirty(ops, "b", long_keys[0])
        migrations.journal_add(ops, "b", {"side": "source", "op": "put", "key": "k/0001"})
    ix.write(fill)


def _view(ix: Index) -> tuple:
    with ix.read() as ops:
        queue = repairs.scan(ops)
        uploads = [u["key"] for u in UploadTxn(ops).list_uploads("b").uploads]
        migrating = (migrations.ranges(ops, "b"), migrations.dirty(ops, "b"), migrations.journal(ops, "b"))
    return (migrating, ix.list_buckets(), list(ix.iter_objects("b")), list(ix.iter_versions("b")), uploads, queue,
            ix.get_volumes(), ix.get_meta("volumes.generation"))


def test_copy_moves_every_table_and_verifies(make_index, other):
    src = make_index("src")
    _load(src)
    report = copy_index(src, other, batch=128)
    assert not report.resumed and report.copied == sum(report.rows.values())
    assert report.rows["objects"] == 705 and report.rows["versions"] == 705 and report.rows["repair"] == 2
    assert report.rows["migrate"] == 4   # two ranges, a dirty key, a journal entry
    assert _view(other) == _view(src)
    with pytest.raises(MetadataIndexError, match="already holds an index"):
        copy_index(src, other)   # never into an index that is not empty


def test_an_interrupted_copy_resumes_and_ends_equal(make_index, other):
    src = make_index("src")
    _load(src)

    class Stop(Exception):
        pass

    def stop_in_objects(table, rows):
        if table == "objects":
            raise Stop
    with pytest.raises(Stop):
        copy_index(src, other, batch=100, progress=stop_in_objects)
    assert other.get_meta("index.copy")["source"] == src.describe()
    report = copy_index(src, other, batch=100)
    assert report.resumed and report.copied < sum(report.rows.values())
    assert _view(other) == _view(src)
    assert other.get_meta("index.copy") is None


def test_a_source_written_during_the_copy_fails_the_verification(make_index, other):
    src = make_index("src")
    _load(src, objects=50)

    def write_behind(table, rows):
        if table == "versions":
            src.put_object("b", "a-late-key", {"version_id": new_id()})   # objects is copied already
    with pytest.raises(CopyMismatch, match="table objects"):
        copy_index(src, other, batch=20, progress=write_behind)
