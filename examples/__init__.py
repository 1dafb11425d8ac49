"""Example databases for the demo: each built from ``<name>.sql``; see ``examples/build.py``."""
