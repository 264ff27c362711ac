"""The HTTP worker processes (``HTTP_WORKERS``): the pool the Raft process
starts, a worker itself, the local link between them and a worker's relay
to the Raft process."""
