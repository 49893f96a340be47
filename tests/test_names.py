"""Chat, connection, tool and agent names are unique in the database, also under racing kernels."""

from __future__ import annotations

import threading

import pytest

from aihub_nb import Hub
from aihub_nb.errors import StoreError
from aihub_nb.store import Store

NAMES = [f"n{i}" for i in range(25)]


def test_hubs_racing_to_create_the_same_names_make_one_row_each(tmp_path, server):
    home = tmp_path / "home"
    Hub(home).close()
    racers = 6
    barrier = threading.Barrier(racers)
    errors: list[BaseException] = []

    def race(k: int) -> None:
        hub = Hub(home)  # a hub of its own: its own connection to the file, like another kernel
        try:
            barrier.wait()
            for name in NAMES:
                hub.connect("OPENAI", "local-chat", name=name, base_url=server.openai_base_url, replace=True)
                hub.chat(name, model=name)
                hub.http_tool(name, "GET", server.openai_base_url + "/models")
                hub.agent(name, model=name, tools=[name])
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)
        finally:
            hub.close()

    threads = [threading.Thread(target=race, args=(k,)) for k in range(racers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    hub = Hub(home)
    try:
        for table in ("ModelConnections", "Chat", "Tool", "Agent"):
            names = [r["name"] for r in hub.store.find(table)]
            assert sorted(names) == sorted(NAMES), table
        chat = hub.get_chat("n0")
        assert hub.store.get("MessageThread", chat.thread_id)["references"]["chat"] == chat.id
    finally:
        hub.close()


def test_an_existing_file_with_duplicate_names_is_deduplicated_then_kept_unique(tmp_path):
    path = tmp_path / "aihub.db"
    store = Store(path)
    # the file as an older aihub_nb left it: no unique index, the migration not run, duplicates
    store.conn.execute('DROP INDEX "uq_Chat_name"')
    store.conn.execute("DELETE FROM _aihub_migrations WHERE name = 'm002_unique_names'")
    first = store.create("Chat", name="ideas", type="chatModel", sourceId="a")
    second = store.create("Chat", name="ideas", type="chatModel", sourceId="b")
    taken = store.create("Chat", name="ideas-2", type="chatModel", sourceId="c")
    third = store.create("Chat", name="ideas", type="chatModel", sourceId="d")
    store.close()

    store = Store(path)
    try:
        names = {r["id"]: r["name"] for r in store.find("Chat")}
        assert names == {first["id"]: "ideas", second["id"]: "ideas-3", taken["id"]: "ideas-2", third["id"]: "ideas-4"}
        with pytest.raises(StoreError) as caught:
            store.create("Chat", name="ideas", type="chatModel", sourceId="e")
        assert str(caught.value) == "A Chat with name='ideas' exists already; Chat name must be unique."
    finally:
        store.close()
