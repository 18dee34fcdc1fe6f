"""Memory from the conversation through both clients: the user's mode, the changes a
chat makes or proposes (plain and streamed), and undo from the history."""

from __future__ import annotations

import pytest
import rapport_client as rc

from tests import factories
from tests.clients.conftest import Drive
from tests.clients.driver import Driver
from tests.fake_openai_server import FakeOpenAI

REMEMBER_BO = ("remember", {"name": "<bo>", "description": "a corgi", "photo": 1})


def test_auto_applies_a_change_that_undo_takes_back(run: Drive, backend: FakeOpenAI) -> None:
    backend.call(REMEMBER_BO).say("Memory updated: <bo>.")

    async def scenario(api: Driver) -> None:
        await api.create_concept("alice", "<placeholder>")  # the user exists
        user = await api.set_memory("alice", memory="auto", deletes=False)
        assert (user.memory, user.memory_deletes) == ("auto", False)
        answer = await api.chat("alice", "this is my dog Bo", image=factories.photo("dog", 0))
        assert answer.memory == "auto" and answer.answer == "Memory updated: <bo>."
        [change] = answer.memory_changes
        assert isinstance(change, rc.MemoryChange)
        assert (change.action, change.applied, change.concept["name"]) == ("created", True, "<bo>")
        names = [c.name for c in await api.collect("list_concepts", "alice")]
        assert names == ["<placeholder>", "<bo>"]

        [latest, *_] = await api.collect("list_history", "alice")
        assert (latest.id, latest.source, latest.undoable) == (change.event_id, "chat", True)
        undone = await api.undo("alice", latest.id)
        assert undone.undone == latest.id and [e.action for e in undone.changes] == ["deleted"]
        names = [c.name for c in await api.collect("list_concepts", "alice")]
        assert names == ["<placeholder>"]
        with pytest.raises(rc.NotUndoable):
            await api.undo("alice", latest.id)

    run(scenario)


def test_a_streamed_chat_in_propose_sends_a_memory_event_and_changes_nothing(
    run: Drive, backend: FakeOpenAI
) -> None:
    backend.call(REMEMBER_BO).say("Shall I remember <bo>?")

    async def scenario(api: Driver) -> None:
        await api.create_concept("alice", "<placeholder>")
        await api.set_memory("alice", memory="propose")
        events = await api.collect(
            "chat_stream", "alice", "this is Bo", image=factories.photo("dog", 0), memory="auto"
        )
        kinds = [type(e) for e in events]
        assert kinds[0] is rc.ConceptsEvent and kinds[-2:] == [rc.MemoryEvent, rc.DoneEvent]
        memory = events[-2]
        # The request asked for auto; the user's own mode (propose) is the widest it gets.
        assert memory.memory == "propose"
        [change] = memory.memory_changes
        assert (change.applied, change.event_id) == (False, None)
        assert change.proposal is not None and change.proposal["name"] == "<bo>"
        assert [c.name for c in await api.collect("list_concepts", "alice")] == ["<placeholder>"]

    run(scenario)
