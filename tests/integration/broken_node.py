"""A deliberately broken raftkv node, for proving the nemesis suite can fail.

Run instead of ``python -m raftkv serve``: the same node, except that a
``GET`` on a node that is not the leader -- a follower, or a leader that was
deposed by a partition -- is answered from its local state machine, as if
``stale=true`` had been asked. That is the classic stale-read bug; a
linearizability checker must reject the histories it produces.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from raftkv import api  # noqa: E402
from raftkv.cli import main  # noqa: E402
from raftkv.raft.node import LEADER  # noqa: E402

_linearizable_read = api._read


async def _read_locally_unless_leader(request, key, shape):
    server = request.app[api.APP_SERVER]
    if server.node.role != LEADER:
        value = server.kv.get(key)
        if value is None:
            return api._json(server, {"error": "key not found", "key": key}, 404)
        return shape(server, key, value)
    return await _linearizable_read(request, key, shape)


api._read = _read_locally_unless_leader

if __name__ == "__main__":
    sys.exit(main(["serve", *sys.argv[1:]]))
