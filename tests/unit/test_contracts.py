"""The implicit contracts are kept: both disks implement node/disk.py's `Disk`, and the S3
layer's digests implement what the object service takes (objects/contracts.py `Digests`).

A method renamed, given another parameter, or turned from a coroutine into a plain
function on one side only would break the gateway with one kind of disk and not the
other; these tests fail first.
"""
from __future__ import annotations

import inspect
from typing import get_type_hints

import pytest

from storage.node.client import RemoteDisk
from storage.node.disk import Disk
from storage.node.store import DiskStore
from storage.objects.contracts import Digests, VersionRecord
from storage.s3.digests import BodyDigests


def _members(protocol) -> list[str]:
    return sorted(name for name, value in vars(protocol).items()
                  if inspect.isfunction(value) and not name.startswith("_"))


def _kind(fn) -> str:
    if inspect.isasyncgenfunction(fn):
        return "async iterator"
    if inspect.iscoroutinefunction(fn):
        return "coroutine"
    return "function"


def _mismatches(protocol, cls) -> list[str]:
    wrong = []
    for name in _members(protocol):
        want, have = getattr(protocol, name), getattr(cls, name, None)
        if have is None:
            wrong.append(f"{cls.__name__}.{name} is missing")
            continue
        want_kind = "async iterator" if "AsyncIterator" in str(inspect.signature(want).return_annotation) \
            else _kind(want)
        if _kind(have) != want_kind:
            wrong.append(f"{cls.__name__}.{name} is a {_kind(have)}, the protocol says {want_kind}")
        want_params = [(p.name, p.kind, p.default) for p in inspect.signature(want).parameters.values()]
        have_params = [(p.name, p.kind, p.default) for p in inspect.signature(have).parameters.values()]
        if want_params != have_params:
            wrong.append(f"{cls.__name__}.{name}{inspect.signature(have)} differs from {inspect.signature(want)}")
    return wrong


@pytest.mark.parametrize("cls", [DiskStore, RemoteDisk])
def test_both_disks_implement_the_disk_protocol(cls):
    assert _mismatches(Disk, cls) == []


def test_disks_carry_their_id(tmp_path):
    assert DiskStore("d1", str(tmp_path)).disk_id == "d1"
    assert RemoteDisk("d2", "http://127.0.0.1:1", "secret", session=None, node_id="n1").disk_id == "d2"


def test_body_digests_implement_what_the_object_service_takes():
    assert _mismatches(Digests, BodyDigests) == []


def test_a_protocol_mismatch_is_reported():
    class Drifted:
        async def read(self, name, offset):          # a parameter lost
            return b""

        def stat(self, name):                         # no longer a coroutine
            return None
    wrong = _mismatches(Disk, Drifted)
    assert "Drifted.put_archive is missing" in wrong
    assert any(w.startswith("Drifted.read(") for w in wrong)
    assert "Drifted.stat is a function, the protocol says coroutine" in wrong


def test_version_records_name_the_fields_the_service_writes():
    fields = get_type_hints(VersionRecord)
    for name in ("bucket", "key", "version_id", "created", "size", "etag", "checksums", "policy", "k", "m",
                 "segment_size", "volume", "disks", "parts", "delete_marker", "versioned"):
        assert name in fields
