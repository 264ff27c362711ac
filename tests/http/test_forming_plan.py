"""RAFT_BOOTSTRAP_EXPECT's decisions (raftkv.http.discovery.plan), case by case."""

from raftkv.http.discovery.plan import (
    Found,
    Join,
    Peer,
    Seen,
    Wait,
    configuration_of,
    decide,
    parse_seen,
    proposal_json,
    proposal_of,
)

A, B, C, D = (Peer(i, f"10.0.0.{n}:9000", f"vol-{i}") for n, i in enumerate("abcd", 1))


def seen(peer, member=False, proposal=None, founded=None):
    return Seen(f"http://{peer.id}:8000", peer, member, proposal, founded)


def known(*peers):
    return {p.id: p for p in peers}


def test_waits_until_n_servers_are_known():
    d = decide(A, known(B), [seen(B)], 3)
    assert isinstance(d, Wait) and d.reason == "2 of 3 servers found" and not d.error


def test_founds_once_every_server_proposes_the_same_configuration():
    p = proposal_of(A, known(B, C))
    assert [s.id for s in p] == ["a", "b", "c"]
    d = decide(A, known(B, C), [seen(B, proposal=p), seen(C, proposal=p)], 3)
    assert d == Found(p, "all 3 servers propose the same configuration")
    conf = configuration_of(d.servers)
    assert conf.voters == ("a", "b", "c")
    assert [s.volume for s in conf.servers] == ["vol-a", "vol-b", "vol-c"]


def test_waits_for_a_server_that_proposes_something_else_or_nothing():
    p = proposal_of(A, known(B, C))
    other = proposal_of(A, known(B, Peer("c", "10.0.0.3:9000", "vol-c2")))
    d = decide(A, known(B, C), [seen(B, proposal=p), seen(C, proposal=other)], 3)
    assert isinstance(d, Wait) and "waiting for c" in d.reason
    d = decide(A, known(B, C), [seen(B, proposal=p)], 3)  # c did not answer this round
    assert isinstance(d, Wait) and "waiting for c" in d.reason
    d = decide(A, known(B, C), [seen(B), seen(C, proposal=p)], 3)
    assert isinstance(d, Wait) and "waiting for b" in d.reason


def test_never_founds_with_more_servers_than_expected():
    p = proposal_of(A, known(B, C))
    d = decide(A, known(B, C, D), [seen(B, proposal=p), seen(C, proposal=p), seen(D)], 3)
    assert isinstance(d, Wait) and d.error and "more than the 3 expected" in d.reason


def test_a_seed_in_a_cluster_is_joined():
    d = decide(A, known(B), [seen(B, member=True)], 3)
    assert d == Join("http://b:8000", "b is already in a cluster")
    # even with too many servers known: joining never makes a second cluster
    d = decide(A, known(B, C, D), [seen(C), seen(D, member=True)], 3)
    assert isinstance(d, Join) and d.seed == "http://d:8000"


def test_a_late_founder_founds_with_the_configuration_that_names_it():
    p = proposal_of(A, known(B, C))
    d = decide(C, known(A, B), [seen(A, member=True, founded=p)], 3)
    assert d == Found(p, "a founded a cluster that names this node")


def test_a_node_whose_volume_changed_joins_instead_of_founding():
    p = proposal_of(A, known(B, C))
    c_again = Peer("c", C.address, "vol-c-new")  # c restarted empty before founding
    d = decide(c_again, known(A, B), [seen(A, member=True, founded=p)], 3)
    assert isinstance(d, Join)


def test_own_answer_among_the_seeds_counts_once():
    d = decide(A, known(), [seen(A)], 1)
    assert d == Found((A,), "all 1 servers propose the same configuration")


def test_answers_round_trip_through_json():
    p = proposal_of(A, known(B, C))
    doc = {"id": "b", "raft": B.address, "volume": B.volume, "member": False, "proposal": proposal_json(p),
           "founded": None}
    assert parse_seen("http://b:8000", doc) == seen(B, proposal=p)
    for bad in ({}, {"id": "b"}, {"id": "b", "raft": "x", "proposal": [{"id": 1}]}, []):
        try:
            parse_seen("s", bad)
        except ValueError:
            continue
        raise AssertionError(f"accepted {bad!r}")
