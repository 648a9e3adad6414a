"""The Docker engine: one client per process, and the operations Anyon needs from it."""
