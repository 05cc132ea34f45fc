"""Saying a thing once, with a bound on what is remembered."""

from beemesh.once import Once


def test_each_key_is_first_once_and_new_keys_past_the_cap_never_are() -> None:
    once = Once(cap=2)
    assert once.first("peer", "bad_signature") and not once.first("peer", "bad_signature")
    assert once.first("peer", "stale")
    assert not once.first("other", "stale")  # the cap is reached: silent, not unbounded
