"""The PostgreSQL index's schema, as the versioned steps `pocket index migrate-schema` applies.

Data only (pg_backend.py applies it and alone imports the driver), kept apart so the
history of the schema reads in one place.
"""
from __future__ import annotations

SCHEMA_VERSION = 3

# Each migration takes the schema from version i to i + 1. Never edit one that has shipped:
# append the next (a table added to backend.TABLES is created by a migration of its own).
MIGRATIONS: list[list[str]] = [
    # 1: the S3 tables
    [f"CREATE TABLE IF NOT EXISTS pocket_{t} (k bytea PRIMARY KEY, v bytea NOT NULL)"
     for t in ("buckets", "objects", "volumes", "meta", "uploads", "parts", "repair", "versions")],
    # 2: migrations out of S3 (index/migrations.py: backfill ranges, dirty keys, journal)
    ["CREATE TABLE IF NOT EXISTS pocket_migrate (k bytea PRIMARY KEY, v bytea NOT NULL)"],
    # 3: volume -> records holding its archive sets (index/volume_index.py). An index with no
    # records is complete at once (its row "\0filled"); one with records is filled by
    # `pocket index migrate-schema` right after the schema migrations (volume_index.fill).
    ["CREATE TABLE IF NOT EXISTS pocket_byvolume (k bytea PRIMARY KEY, v bytea NOT NULL)",
     "INSERT INTO pocket_byvolume (k, v) SELECT '\\x0066696c6c6564'::bytea, ''::bytea "
     "WHERE NOT EXISTS (SELECT 1 FROM pocket_objects) AND NOT EXISTS (SELECT 1 FROM pocket_versions) "
     "AND NOT EXISTS (SELECT 1 FROM pocket_parts) ON CONFLICT (k) DO NOTHING"],
]
assert len(MIGRATIONS) == SCHEMA_VERSION
