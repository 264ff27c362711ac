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

from raftkv.cli.main import main  # noqa: E402
from raftkv.http.api import kv  # noqa: E402

_linearizable_read = kv.read


def _read_locally_unless_leader(ctx, call, key, level="linearizable", shape=kv.value_shape, freshness=None):
    return _linearizable_read(ctx, call, key, level if ctx.node.is_leader else "none", shape, freshness)


# the data plane's one read, which every route that reads keys calls
kv.read = _read_locally_unless_leader

if __name__ == "__main__":
    sys.exit(main(["serve", *sys.argv[1:]]))
