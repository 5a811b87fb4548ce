"""The engine: serving, executing and dispatching ops, the runs log, caches and migration.

It runs on a :class:`tidal.engine.runtime.Runtime` and never sees the user-facing ``App``.
"""
