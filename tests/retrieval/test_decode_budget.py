"""The process's budget of pixels being decoded: a total, a share per owner, a short wait."""

from __future__ import annotations

import threading

import pytest

from retrieval.decode_budget import DecodeBudget
from retrieval.errors import DecodeBusy


def test_an_owner_at_its_share_waits_then_is_refused_while_another_owner_gets_in() -> None:
    budget = DecodeBudget(100, owner_share=50, wait_s=0.05)
    with budget.hold("a", 40):
        with pytest.raises(DecodeBusy), budget.hold("a", 20):  # a: 40 + 20 is over 50
            pass
        with budget.hold("b", 50):  # b's room is untouched by a
            assert budget.in_use == 90
            with pytest.raises(DecodeBusy), budget.hold("c", 20):  # the total is full
                pass
    assert budget.in_use == 0


def test_a_photo_over_the_share_holds_the_whole_share_and_still_decodes_alone() -> None:
    budget = DecodeBudget(100, owner_share=50, wait_s=0)
    with budget.hold("a", 80):
        assert budget.in_use == 50


def test_a_waiting_decode_gets_in_when_room_is_freed() -> None:
    budget = DecodeBudget(100, owner_share=100, wait_s=30)
    first_in, release, got_in = threading.Event(), threading.Event(), threading.Event()

    def first() -> None:
        with budget.hold("a", 80):
            first_in.set()
            release.wait(30)

    def second() -> None:
        with budget.hold("b", 80):
            got_in.set()

    holder = threading.Thread(target=first)
    holder.start()
    assert first_in.wait(30)
    waiter = threading.Thread(target=second)
    waiter.start()
    assert not got_in.wait(0.05)  # no room while the first holds 80 of 100
    release.set()
    assert got_in.wait(30)
    holder.join(30)
    waiter.join(30)
    assert budget.in_use == 0


def test_a_failing_decode_gives_its_pixels_back() -> None:
    budget = DecodeBudget(100, owner_share=100, wait_s=0)
    with pytest.raises(RuntimeError), budget.hold("a", 100):
        raise RuntimeError("corrupt")
    with budget.hold("a", 100):
        assert budget.in_use == 100
