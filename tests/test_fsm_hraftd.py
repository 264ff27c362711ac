"""hraftd's commands and snapshot format on raftkv's store."""

import io
import json

import pytest

from raftkv.statemachine.commands import CommandError, encode_delete, encode_set, encode_set_many
from raftkv.statemachine.hraftd import HraftdKVStore, to_hraftd_command


def test_commands_translate_to_hraftd_json_and_apply(tmp_path):
    kv = HraftdKVStore(str(tmp_path / "a.db"))
    assert to_hraftd_command(encode_set("k", "v")) == b'{"op":"set","key":"k","value":"v"}'
    assert json.loads(to_hraftd_command(encode_delete("k"))) == {"op": "delete", "key": "k"}
    with pytest.raises(CommandError):
        to_hraftd_command(encode_set_many({"a": "1", "b": "2"}))
    kv.apply(1, to_hraftd_command(encode_set("k", "v")))
    kv.apply(2, b'{"op":"set","key":"x","value":"y"}')
    assert kv.apply(3, b'{"op":"delete","key":"x"}') is True
    assert isinstance(kv.apply(4, b"not json"), CommandError)
    kv.commit()
    assert kv.applied_index == 4 and kv.get("k") == "v" and kv.get("x") is None


def test_snapshot_is_hraftd_json_and_restores_at_the_given_index(tmp_path):
    kv = HraftdKVStore(str(tmp_path / "a.db"))
    kv.apply(1, b'{"op":"set","key":"b","value":"2"}')
    kv.apply(2, b'{"op":"set","key":"a","value":"<1>"}')
    out = io.BytesIO()
    size = kv.snapshot()(out)
    assert out.getvalue() == b'{"a":"<1>","b":"2"}' and size == len(out.getvalue())
    other = HraftdKVStore(str(tmp_path / "b.db"))
    other.expect_restore(2)
    other.restore(io.BytesIO(out.getvalue()))
    assert other.applied_index == 2 and dict(other.items()) == {"a": "<1>", "b": "2"}
    empty = io.BytesIO()
    HraftdKVStore(str(tmp_path / "c.db")).snapshot()(empty)
    assert empty.getvalue() == b"{}"
