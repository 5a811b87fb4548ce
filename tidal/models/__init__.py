"""Models as a service: one client for hosted, local and stand-in models.

Placeholder while the package is built; see docs/models.md.
"""
