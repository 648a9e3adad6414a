"""Snapshots of an environment's setup (docs/ARCHITECTURE.md, "Snapshots"): what a setup prepared, kept to start the
owner's next attempt on the repository from it."""
