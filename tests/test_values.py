"""Values are checked against schema.prisma's types on write, and a bad stored value is read defensively."""

from __future__ import annotations

import math
import warnings

import pytest

from aihub_nb.errors import StoreError, StoreWarning


@pytest.mark.parametrize(
    ("model", "fields", "named"),
    [
        ("Metric", {"name": "m", "value": "abc"}, "Metric.value is a Float field"),
        ("Metric", {"name": "m", "value": math.nan}, "Metric.value is a Float field"),
        ("Metric", {"name": "m", "value": 1.0, "dimensions": {"x": math.inf}}, "Metric.dimensions is a Json field"),
        ("Agent", {"name": "a", "chatModelId": "c", "maxRounds": "8"}, "Agent.maxRounds is an Int field"),
        ("UserSettings", {"sidebarOpen": "yes"}, "UserSettings.sidebarOpen is a Boolean field"),
        ("Jobs", {"name": "j", "type": "t", "textLogId": "l", "startedAt": "yesterday"}, "Jobs.startedAt is a DateTime field"),
    ],
)
def test_a_value_of_the_wrong_type_is_refused_in_one_line(store, model, fields, named):
    with pytest.raises(StoreError) as refused:
        store.create(model, **fields)
    assert str(refused.value).startswith(named) and "\n" not in str(refused.value)
    assert store.count(model) == 0
    with pytest.raises(StoreError, match=named):
        store.create_many(model, [{k: v for k, v in fields.items()}])
    assert store.count(model) == 0


def test_updates_are_checked_too_and_good_values_pass(store):
    import datetime

    import numpy as np

    row = store.create("Metric", name="m", value=np.float32(2.5), dimensions={"k": 1})
    store.create("Metric", name="n", value=3, createdAt=datetime.datetime.now(datetime.timezone.utc))
    store.create("Agent", name="a", chatModelId="c", maxRounds=np.int64(3))
    with pytest.raises(StoreError, match="Metric.value is a Float field: give a number, not 'abc'"):
        store.update("Metric", row["id"], value="abc")
    assert store.get("Metric", row["id"])["value"] == 2.5


def test_metrics_stay_readable_after_a_bad_write_is_refused(hub):
    with pytest.raises(StoreError):
        hub.store.create("Metric", name="score", value="abc")
    hub.log_metric("score", 1.0)
    assert hub.metrics("score")["value"].tolist() == [1.0]
    # a value written outside aihub_nb reads as NaN instead of failing the frame
    hub.store.conn.execute("""INSERT INTO "Metric" (id, "references", createdAt, updatedAt, name, dimensions, value)
        VALUES ('x', '{}', '2030-01-01T00:00:00.000Z', '2030-01-01T00:00:00.000Z', 'score', '{}', 'abc')""")
    values = hub.metrics("score")["value"].tolist()
    assert values[0] == 1.0 and math.isnan(values[1])


def test_malformed_json_written_outside_is_reported_not_fatal(hub, server):
    hub.connect("OPENAI", "local-chat", name="m", base_url=server.openai_base_url)
    hub.chat("good").send("hi")
    bad = hub.chat("bad")
    hub.store.conn.execute("""UPDATE "Chat" SET "references" = '{bad' WHERE name = 'bad'""")
    with pytest.warns(StoreWarning) as caught:
        listed = hub.chats()
    assert [(c["name"], c["messages"]) for c in listed] == [("good", 2), ("bad", 0)]
    assert any(bad.id in str(w.message) and "references" in str(w.message) for w in caught)
    with pytest.warns(StoreWarning, match=rf"Chat row '{bad.id}': field references holds malformed JSON"):
        rows = hub.store.find("Chat")
    assert [r["references"] for r in rows][1] == {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert hub.get_chat("good").messages()[1]["type"] == "chatModel"  # other rows: no warning
