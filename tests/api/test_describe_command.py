"""The fields of the DEBUG line `fsm: applied write`: the user's writes show
their key and size, raftkv's own (the HTTP-address registry) say what they
are and carry internal=true, so they cannot be mistaken for the user's."""

from __future__ import annotations

from raftkv.statemachine.commands import RESERVED_PREFIX, describe_command, encode_delete, encode_set, encode_set_many


def test_user_writes_show_key_and_size_never_the_value():
    assert describe_command(encode_set("user", "kj")) == [("op", "set"), ("key", "user"), ("size", 2)]
    assert describe_command(encode_delete("user")) == [("op", "del"), ("key", "user")]
    assert describe_command(encode_set_many({"a": "1", "b": "2"})) == [("op", "setm"), ("keys", 2)]


def test_the_http_registry_is_labelled_as_what_it_is():
    key = RESERVED_PREFIX + "http/n2"
    fields = describe_command(encode_set(key, "127.0.0.1:8001"))
    assert fields == [("op", "register-http"), ("node", "n2"), ("http", "127.0.0.1:8001"), ("internal", True)]
    assert describe_command(encode_delete(key)) == [("op", "unregister-http"), ("node", "n2"),
                                                   ("internal", True)]
    # no field shows the raw reserved key
    assert not any(isinstance(v, str) and v.startswith(RESERVED_PREFIX) for _, v in fields)


def test_other_reserved_keys_are_marked_internal():
    assert describe_command(encode_set(RESERVED_PREFIX + "later", "x"))[-1] == ("internal", True)
    assert ("internal", True) not in describe_command(encode_set("raftkv/http/n2", "x"))


def test_malformed_commands_say_unknown():
    assert describe_command(b"\xc1") == [("op", "unknown")]
