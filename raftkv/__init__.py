"""raftkv: a Raft key-value store you can run, read and learn from."""

__version__ = "0.1.0"
