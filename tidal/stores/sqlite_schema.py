"""The tables of the SQLite store (described in :mod:`tidal.stores.sqlite`),
created if missing each time a store opens its file."""

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
"""
