"""The tables of the SQLite store, created if missing each time a store
opens its file::

    tidal_instances (component, instance) -> version, created_at, updated_at
    tidal_state     (component, instance, key) -> version, written_at, value
                    value NULL marks a deleted key (so that readers asking
                    "what changed since v" learn about deletions); value is
                    the last column so that filtering on version never reads
                    a large value's overflow pages (a file made before
                    written_at existed gets it appended after value)
    tidal_history   (component, instance, key, version) -> written_at, value:
                    earlier rows of tidal_state, moved here by the commit that
                    overwrote them, at most ``history_versions`` per key
    tidal_ops       id AUTOINCREMENT, component, instance, flow, status
                    (0 pending, 1 failed), enqueued_at, attempts, failed_at,
                    error, payload. Done ops are deleted in their commit.
    tidal_queues    (component, instance) of every instance with pending ops
    tidal_leases    (component, instance) -> token, expires_at
    tidal_dedupe    key -> expires_at: dedupe keys of enqueued triggers and ticks
    tidal_cache     key -> expires_at, value
    tidal_rates     bucket -> tat: each shared rate limit's GCRA time (see
                    tidal.stores.rates); a row whose tat has passed is a full
                    bucket, and is purged (through the index on tat)
"""

from __future__ import annotations

import sqlite3

PENDING, FAILED = 0, 1
"""``tidal_ops.status``."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS tidal_instances (
    component TEXT NOT NULL, instance TEXT NOT NULL, version INTEGER NOT NULL,
    created_at REAL NOT NULL, updated_at REAL NOT NULL,
    PRIMARY KEY (component, instance));
CREATE TABLE IF NOT EXISTS tidal_state (
    component TEXT NOT NULL, instance TEXT NOT NULL, key TEXT NOT NULL,
    version INTEGER NOT NULL, written_at REAL, value BLOB,
    PRIMARY KEY (component, instance, key));
-- A rowid table: WITHOUT ROWID tables store large values badly.
CREATE TABLE IF NOT EXISTS tidal_history (
    component TEXT NOT NULL, instance TEXT NOT NULL, key TEXT NOT NULL,
    version INTEGER NOT NULL, written_at REAL, value BLOB);
CREATE UNIQUE INDEX IF NOT EXISTS tidal_history_by_key ON tidal_history (component, instance, key, version);
-- AUTOINCREMENT: done ops are deleted, and a plain rowid table may then hand
-- out an id again; ids must only grow for "ops up to id N" to mean anything.
CREATE TABLE IF NOT EXISTS tidal_ops (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    component TEXT NOT NULL, instance TEXT NOT NULL, flow TEXT NOT NULL,
    status INTEGER NOT NULL DEFAULT 0, enqueued_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, failed_at REAL, error TEXT,
    payload BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS tidal_ops_by_instance ON tidal_ops (component, instance, status, id);
-- One row per instance with pending ops, so that a claim looks at instances,
-- not at ops: scanning ops in id order would wade through the whole backlog
-- of an instance that another worker holds. The trigger keeps it in the
-- same transaction as the insert; INSERT OR IGNORE on an existing row
-- writes no page, so enqueues pay (almost) nothing for it.
CREATE TABLE IF NOT EXISTS tidal_queues (
    component TEXT NOT NULL, instance TEXT NOT NULL, PRIMARY KEY (component, instance));
CREATE TRIGGER IF NOT EXISTS tidal_ops_queued AFTER INSERT ON tidal_ops BEGIN
    INSERT OR IGNORE INTO tidal_queues VALUES (NEW.component, NEW.instance);
END;
CREATE TABLE IF NOT EXISTS tidal_leases (
    component TEXT NOT NULL, instance TEXT NOT NULL, token TEXT NOT NULL,
    expires_at REAL NOT NULL, PRIMARY KEY (component, instance));
CREATE TABLE IF NOT EXISTS tidal_dedupe (key TEXT PRIMARY KEY, expires_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS tidal_dedupe_by_expiry ON tidal_dedupe (expires_at);
CREATE TABLE IF NOT EXISTS tidal_cache (
    key BLOB PRIMARY KEY, expires_at REAL NOT NULL, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS tidal_rates (bucket TEXT PRIMARY KEY, tat REAL NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tidal_rates_by_tat ON tidal_rates (tat);
"""


def version_of(conn: sqlite3.Connection, component: str, instance: str) -> int | None:
    """The instance's state version; None when it does not exist."""
    row = conn.execute(
        "SELECT version FROM tidal_instances WHERE component=? AND instance=?", (component, instance)
    ).fetchone()
    return None if row is None else int(row[0])
