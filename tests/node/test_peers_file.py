"""peers.json: what is refused (before the volume is touched) and what a
recovery writes (hashicorp RecoverCluster: log kept, new configuration
appended after it and committed)."""

from __future__ import annotations

import json
import os

import pytest

from raftkv.node.disk.volume import BadPeersFile, Volume, read_peers_file
from raftkv.raft.configuration import Configuration, Server, Suffrage
from raftkv.raft.messages import Entry, EntryType
from raftkv.raft.node import RaftNode


def _write(tmp_path, content) -> None:
    text = content if isinstance(content, str) else json.dumps(content)
    (tmp_path / "peers.json").write_text(text)


def test_no_file_means_no_recovery(tmp_path):
    assert read_peers_file(str(tmp_path)) is None
    assert read_peers_file(str(tmp_path / "missing")) is None


def test_a_good_file_gives_the_configuration(tmp_path):
    _write(tmp_path, [{"id": "n1", "address": "10.0.0.1:9000", "non_voter": False},
                      {"id": "n2", "address": "10.0.0.2:9000", "non_voter": True},
                      {"id": "n3", "address": "10.0.0.3:9000"}])
    conf = read_peers_file(str(tmp_path))
    assert conf == Configuration((Server("n1", "10.0.0.1:9000", Suffrage.VOTER),
                                  Server("n2", "10.0.0.2:9000", Suffrage.NONVOTER),
                                  Server("n3", "10.0.0.3:9000", Suffrage.VOTER)))


@pytest.mark.parametrize("content, problem", [
    ("not json", "not valid JSON"),
    ({"id": "n1", "address": "a:1"}, "expected a JSON list"),
    ([], "empty"),
    (["n1"], "expected an object"),
    ([{"address": "a:1"}], "missing id"),
    ([{"id": "", "address": "a:1"}], "missing id"),
    ([{"id": "n1"}], "missing address"),
    ([{"id": "n1", "address": "a:1", "non_voter": "no"}], "non_voter must be"),
    ([{"id": "n1", "address": "a:1"}, {"id": "n1", "address": "b:1"}], "duplicate id 'n1'"),
    ([{"id": "n1", "address": "a:1"}, {"id": "n2", "address": "a:1"}], "duplicate address"),
    ([{"id": "n1", "address": "a:1", "non_voter": True}], "no voter"),
])
def test_bad_content_is_refused_with_the_problem_named(tmp_path, content, problem):
    _write(tmp_path, content)
    with pytest.raises(BadPeersFile, match=problem):
        read_peers_file(str(tmp_path))
    # nothing else was created or renamed
    assert sorted(os.listdir(tmp_path)) == ["peers.json"]


def _conf(*ids: str) -> Configuration:
    return Configuration(tuple(Server(i, f"127.0.0.1:{9000 + n}") for n, i in enumerate(ids)))


def test_recovery_appends_a_committed_configuration_after_the_log(tmp_path):
    data = str(tmp_path)
    volume = Volume(data)
    old = _conf("n1", "n2", "n3")
    volume.stable.set_hard_state(3, "n2")
    volume.append([Entry(1, 1, EntryType.CONFIGURATION, old.encode()),
                   Entry(2, 2, EntryType.COMMAND, b"x"),
                   Entry(3, 3, EntryType.COMMAND, b"y")])  # never committed
    volume.sync()
    volume.stable.set_commit_hint(2)
    volume.close()

    _write(tmp_path, [{"id": "n1", "address": "127.0.0.1:9000"}])
    new = read_peers_file(data)
    volume = Volume(data)
    assert volume.recover_cluster(new) == 4
    assert not os.path.exists(tmp_path / "peers.json")
    assert os.path.exists(tmp_path / "peers.json.recovered")
    state = volume.recover()
    volume.close()

    assert [e.index for e in state.entries] == [1, 2, 3, 4]
    # a term of its own: another survivor's entry at index 4 would be term 3 at most
    assert state.entries[-1] == Entry(4, 4, EntryType.CONFIGURATION, new.encode())
    assert (state.current_term, state.voted_for, state.commit_index) == (4, None, 4)
    core = RaftNode("n1", "127.0.0.1:9000", state=state)
    st = core.status()
    assert st.configuration == new and st.commit_index == 4
    assert core.membership.committed == new


def test_recovery_of_an_empty_volume_starts_the_log_with_it(tmp_path):
    data = str(tmp_path)
    _write(tmp_path, [{"id": "n1", "address": "127.0.0.1:9000"}])
    volume = Volume(data)
    assert volume.recover_cluster(read_peers_file(data)) == 1
    state = volume.recover()
    volume.close()
    assert state.entries[0].index == 1 and state.entries[0].term == 1 and state.commit_index == 1


def test_recovery_goes_on_from_the_log_when_the_stored_term_cannot_be_incremented(tmp_path):
    """A cluster driven to a term near 2^64 by forged messages (before they
    were refused) gets going again with peers.json."""
    data = str(tmp_path)
    volume = Volume(data)
    volume.append([Entry(1, 1, EntryType.CONFIGURATION, _conf("n1", "n2", "n3").encode()),
                   Entry(2, 2, EntryType.COMMAND, b"x")])
    volume.sync()
    volume.stable.set_hard_state(2 ** 64 - 1, None)
    volume.close()

    _write(tmp_path, [{"id": "n1", "address": "127.0.0.1:9000"}])
    volume = Volume(data)
    assert volume.recover_cluster(read_peers_file(data)) == 3
    state = volume.recover()
    volume.close()
    assert state.current_term == 3 and state.entries[-1].term == 3
