"""Reference solution of exercise "readindex" (Raft thesis §6.4; paper §8)."""

from raftkv.raft.rules import ReadDecision, ReadRequest


def read_index(req: ReadRequest) -> ReadDecision:
    """Wait for this term's first commit and a majority's heartbeat echo; read at the commit index of arrival."""
    if not req.quorum_confirmed or req.commit_index < req.first_index_of_term:
        return ReadDecision(False)
    if req.arrival_commit_index >= req.first_index_of_term:
        return ReadDecision(True, req.arrival_commit_index)
    return ReadDecision(True, req.commit_index)
