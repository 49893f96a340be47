"""Images and embeddings: the media store, the providers' image and embedding calls over real HTTP
through the official clients, and what the demo model answers to images in a chat."""

from __future__ import annotations

import base64
import io
import stat

import numpy as np
import pytest

from aihub_nb.demo.model import draw
from aihub_nb.errors import ProviderError, RateLimitError, UsageError
from aihub_nb.media import MediaStore, data_url, externalize, image_bytes, image_size, mime_of
from aihub_nb.providers import make_provider
from aihub_nb.recording import MemorySink, recording_transport
from aihub_nb.testing import ScriptedReply

KINDS = ("OPENAI", "OLLAMA")


def _make(kind, server, **kwargs):
    if kind == "OPENAI":
        return make_provider(kind, connection_name="pics", base_url=server.openai_base_url, **kwargs)
    return make_provider(kind, connection_name="pics", host=server.ollama_host, **kwargs)


@pytest.fixture(params=KINDS)
def provider(request, server):
    made = _make(request.param, server)
    yield made
    made.close()


# -- media store ----------------------------------------------------------------------------------
def test_media_store_keeps_each_image_once_private(tmp_path):
    media = MediaStore(tmp_path / "media")
    png = draw("a red boat", 30, 20)
    ref = media.put(png)
    assert ref.startswith("media:") and ref.endswith(".png")
    assert media.put(png) == ref and len(list((tmp_path / "media").iterdir())) == 1
    assert media.read(ref) == png
    assert stat.S_IMODE((tmp_path / "media").stat().st_mode) == 0o700
    assert stat.S_IMODE(media.path(ref).stat().st_mode) == 0o600
    with pytest.raises(UsageError, match="not a media reference"):
        media.read("media:../../etc/passwd.png")


def test_image_bytes_from_what_a_notebook_holds(tmp_path):
    png = draw("x", 12, 7)
    path = tmp_path / "x.png"
    path.write_bytes(png)
    assert image_bytes(path) == (png, "image/png") == image_bytes(str(path)) == image_bytes(png)

    import matplotlib.pyplot as plt
    from IPython.display import Image as IPyImage
    from PIL import Image as PILImage

    fig, ax = plt.subplots(figsize=(2, 1), dpi=50)
    ax.plot([1, 2, 3])
    data, mime = image_bytes(fig)
    plt.close(fig)
    assert mime == "image/png" and image_size(data)[0] > 10

    pil = PILImage.new("RGB", (9, 5), "red")
    data, mime = image_bytes(pil)
    assert (mime, image_size(data)) == ("image/png", (9, 5))
    jpeg = io.BytesIO()
    pil.save(jpeg, format="JPEG")
    assert image_size(jpeg.getvalue()) == (9, 5) and mime_of(jpeg.getvalue()) == "image/jpeg"
    assert image_bytes(IPyImage(data=png)) == (png, "image/png")

    with pytest.raises(UsageError, match="Cannot use a dict as an image"):
        image_bytes({})
    with pytest.raises(UsageError, match="No image file"):
        image_bytes(tmp_path / "missing.png")
    with pytest.raises(UsageError, match="not a PNG, JPEG"):
        image_bytes(b"plain text")


def test_externalize_replaces_base64_images_and_payloads(tmp_path):
    media = MediaStore(tmp_path / "media")
    png = draw("a long prompt " * 20, 200, 200)
    vector = base64.b64encode(np.ones(512, dtype="<f4").tobytes()).decode()
    text = (
        '{"data": [{"b64_json": "%s"}], "url": "%s", "images": ["%s"], "embedding": "%s", "short": "abc"}'
        % (base64.b64encode(png).decode(), data_url(png), base64.b64encode(png).decode(), vector)
    )
    out = externalize(text, media)
    ref = media.put(png)
    assert out.count(f'"{ref}"') == 3
    assert '"[base64, 2048 bytes, not kept]"' in out and '"short": "abc"' in out
    assert len(out) < 600


# -- providers: images ----------------------------------------------------------------------------
def test_openai_generates_images_through_the_client(server):
    sink = MemorySink()
    provider = _make("OPENAI", server, transport=recording_transport(sink, lib="httpx2"))
    try:
        result = provider.generate_images("local-image", "a blue whale", size="48x24", n=2)
    finally:
        provider.close()
    assert [image_size(i.data) for i in result.images] == [(48, 24), (48, 24)]
    assert result.images[0].data == draw("a blue whale", 48, 24) and result.images[0].mime == "image/png"
    assert result.images[0].revised_prompt == "a blue whale"
    assert result.usage.prompt_tokens == 3 and result.usage.completion_tokens == 544
    sent = server.requests[-1]
    assert (sent.path, sent.json) == ("/v1/images/generations", {"model": "local-image", "prompt": "a blue whale", "n": 2, "size": "48x24"})
    assert sink.calls[0].url.endswith("/v1/images/generations") and sink.calls[0].status_code == 200


def test_dall_e_models_are_asked_for_b64_json(server):
    provider = _make("OPENAI", server)
    try:
        server.models = (*server.models, "dall-e-3")
        import aihub_nb.demo.server as demo

        demo.IMAGE_MODELS, saved = (*demo.IMAGE_MODELS, "dall-e-3"), demo.IMAGE_MODELS
        try:
            result = provider.generate_images("dall-e-3", "a fox")
        finally:
            demo.IMAGE_MODELS = saved
            server.models = server.models[:-1]
    finally:
        provider.close()
    # dall-e models are asked for b64_json, so nothing is fetched from a URL
    assert server.requests[-1].json["response_format"] == "b64_json"
    assert image_size(result.images[0].data) == (256, 256)


def test_image_errors_are_one_line_naming_the_connection(server):
    provider = _make("OPENAI", server)
    try:
        with pytest.raises(ProviderError) as refused:
            provider.generate_images("local-image", "x", size="big")
        assert str(refused.value).startswith("Connection 'pics' refused the image request (400: Invalid value: 'big'")
        assert str(refused.value).endswith("check the model, --size, --n and --quality.")
        server.script(ScriptedReply(fault="policy"))
        with pytest.raises(ProviderError, match=r"safety system.*\); rephrase the prompt\.$"):
            provider.generate_images("local-image", "x")
        with pytest.raises(ProviderError, match="Supported values are: 'local-image'"):
            provider.generate_images("local-chat", "x")
    finally:
        provider.close()


def test_ollama_refuses_image_generation_in_one_line(server):
    provider = _make("OLLAMA", server)
    try:
        with pytest.raises(UsageError, match=r"^Connection 'pics': Ollama's image generation is experimental and macOS-only"):
            provider.generate_images("x/z-image-turbo", "a cat")
    finally:
        provider.close()
    assert not [r for r in server.requests if r.path.startswith("/api/")]


# -- providers: embeddings ------------------------------------------------------------------------
def test_embeddings_through_both_clients(provider, server):
    texts = ["the cat sat", "the cat ran", "stock prices fell"]
    result = provider.embed("local-embed", texts)
    assert result.vectors.dtype == np.float32 and result.vectors.shape == (3, 64)
    similarity = result.vectors @ result.vectors.T
    assert similarity[0, 1] > similarity[0, 2] and abs(similarity[0, 0] - 1) < 1e-5
    assert result.prompt_tokens == 9
    sent = server.requests[-1]
    if provider.name == "OPENAI":
        assert (sent.path, sent.json["encoding_format"]) == ("/v1/embeddings", "base64")
    else:
        assert (sent.path, sent.json["input"]) == ("/api/embed", texts)


def test_openai_and_ollama_give_the_same_vectors(server):
    a, b = _make("OPENAI", server), _make("OLLAMA", server)
    try:
        assert np.allclose(a.embed("local-embed", ["x y"]).vectors, b.embed("local-embed", ["x y"]).vectors)
    finally:
        a.close()
        b.close()


def test_embedding_errors(provider, server):
    with pytest.raises(ProviderError, match="does not support embeddings"):
        provider.embed("local-chat", ["x"])
    server.script(ScriptedReply(fault="429", retry_after=1))
    with pytest.raises(RateLimitError) as limited:
        provider.embed("local-embed", ["x"])
    assert limited.value.connection == "pics"
    if provider.name == "OPENAI":
        with pytest.raises(ProviderError, match="1 to 2048"):
            provider.embed("local-embed", ["x"] * 2049)


# -- images in chats ------------------------------------------------------------------------------
def test_images_in_chat_reach_the_model_in_each_wire_format(provider, server):
    png = draw("a plot", 40, 30)
    content = [{"type": "text", "text": "what is this?"}, {"type": "image_url", "image_url": {"url": data_url(png)}}]
    events = list(provider.chat("local-chat", [{"role": "user", "content": content}]))
    assert "".join(e.text for e in events).endswith('You said: "what is this?" I see 1 image: 40x30 PNG.')
    sent = server.requests[-1].json["messages"][0]
    if provider.name == "OLLAMA":
        assert sent["images"] == [base64.b64encode(png).decode()] and sent["content"] == "what is this?"
    else:
        assert sent["content"][1]["image_url"]["url"].startswith("data:image/png;base64,")


def test_a_text_only_model_refuses_images(provider, server):
    server.text_only_models = {"local-tools"}
    try:
        content = [{"type": "text", "text": "hi"}, {"type": "image_url", "image_url": {"url": data_url(draw("x", 2, 2))}}]
        with pytest.raises(ProviderError, match="image"):
            list(provider.chat("local-tools", [{"role": "user", "content": content}]))
        assert "".join(e.text for e in provider.chat("local-tools", [{"role": "user", "content": "hi"}]))
    finally:
        server.text_only_models = set()


# -- recorded network calls -----------------------------------------------------------------------
def test_network_calls_reference_media_instead_of_base64(server, hub):
    from aihub_nb.recording import StoreSink

    sink = StoreSink(hub.store)
    provider = _make("OPENAI", server, transport=recording_transport(sink, lib="httpx2"))
    try:
        result = provider.generate_images("local-image", "a green field " * 30, size="300x300")
        png = draw("a plot " * 40, 200, 150)
        content = [{"type": "text", "text": "see"}, {"type": "image_url", "image_url": {"url": data_url(png)}}]
        list(provider.chat("local-chat", [{"role": "user", "content": content}], stream=False))
    finally:
        provider.close()
    media = MediaStore.beside(hub.store)
    generated, chat = hub.store.find("NetworkCall")[-2:]
    ref = media.put(result.images[0].data)
    assert f'"b64_json":"{ref}"' in generated["response"] and "iVBOR" not in generated["response"]
    assert f'"url":"{media.put(png)}"' in chat["body"] and "base64," not in chat["body"]
    assert media.read(ref) == result.images[0].data


# -- the hub: images, embeddings, similar ----------------------------------------------------------
@pytest.fixture
def mhub(hub, server):
    hub.connect("OPENAI", "local-image", name="pics", base_url=server.openai_base_url, type="IMAGE")
    hub.connect("OPENAI", "local-embed", name="vec", base_url=server.openai_base_url, type="EMBEDDING")
    hub.connect("OPENAI", "local-chat", name="local", base_url=server.openai_base_url)
    return hub


def test_hub_image_keeps_prompt_and_images_in_the_chat(mhub, tmp_path):
    result = mhub.image("a red house", model="pics", size="64x48", n=2, chat="art")
    assert [image_size(d) for d in result.images] == [(64, 48), (64, 48)]
    media = MediaStore.beside(mhub.store)
    assert [media.read(r) for r in result.refs] == result.images
    rows = mhub.get_chat("art").messages()
    assert [(r["type"], r["content"]) for r in rows] == [("user", "a red house"), ("chatModel", "")]
    assert rows[1]["data"] == {"images": result.refs}
    job = mhub.store.get("Jobs", result.ids["job"])
    assert (job["type"], job["status"]) == ("image", "completed")
    metrics = {m["name"]: m["value"] for m in mhub.store.find("Metric") if m["references"].get("job") == job["id"]}
    assert metrics["images"] == 2 and metrics["latency_ms"] > 0
    call = mhub.store.find("NetworkCall")[-1]
    assert call["references"]["job"] == job["id"] and "media:" in call["response"] and len(call["response"]) < 2000
    saved = result.save(tmp_path / "house.png")
    assert [p.name for p in saved] == ["house-1.png", "house-2.png"] and saved[0].read_bytes() == result.images[0]
    assert result._repr_png_() == result.images[0] and result._repr_html_().count("<img ") == 2


def test_image_errors_name_the_connection_and_are_recorded(mhub, server):
    with pytest.raises(UsageError, match=r"^Connection 'local' is a CHAT connection \(local-chat\); this needs an IMAGE"):
        mhub.image("x", model="local")
    with pytest.raises(UsageError, match="is not WIDTHxHEIGHT"):
        mhub.image("x", model="pics", size="huge")
    with pytest.raises(ProviderError, match=r"^Connection 'pics' refused the image request \(400: .*size"):
        mhub.image("x", model="pics", size="4000x4000", chat="bad")
    job = mhub.store.find("Jobs")[-1]
    assert job["status"] == "failed" and "refused the image request" in job["error"]
    assert mhub.store.find("NetworkCall")[-1]["statusCode"] == 400
    assert [r["content"] for r in mhub.get_chat("bad").messages()] == ["x"]
    with pytest.raises(UsageError, match="which does not chat"):
        mhub.get_chat("bad").send("hello")
    with pytest.raises(UsageError, match="this needs an EMBEDDING connection"):
        mhub.embed("x", model="pics")


def test_embed_caches_and_sends_only_new_texts(mhub, server):
    first = mhub.embed(["a cat", "a dog", "a cat"], model="vec")
    assert first.shape == (3, 64) and first.dtype == np.float32 and np.array_equal(first[0], first[2])
    sent = [r for r in server.requests if r.path == "/v1/embeddings"]
    assert sent[-1].json["input"] == ["a cat", "a dog"]
    again = mhub.embed(["a dog", "a bird", "a cat"], model="vec")
    sent = [r for r in server.requests if r.path == "/v1/embeddings"]
    assert len(sent) == 2 and sent[-1].json["input"] == ["a bird"]
    assert np.array_equal(again[0], first[1]) and np.array_equal(again[2], first[0])
    row = mhub.store.first("EmbeddingCache")
    assert isinstance(row["vector"], bytes) and len(row["vector"]) == 4 * 64 and row["dimensions"] == 64
    hits = [m["value"] for m in mhub.store.find("Metric") if m["name"] == "cache_hits"]
    assert hits == [0.0, 2.0]  # a text repeated in one call is sent once, but is no cache hit


def test_embed_batches_and_retries(mhub, server):
    server.script(ScriptedReply(fault="503"))
    vectors = mhub.embed([f"text number {i}" for i in range(7)], model="vec", batch_size=3)
    assert vectors.shape == (7, 64)
    sent = [r.json["input"] for r in server.requests if r.path == "/v1/embeddings"]
    assert [len(b) for b in sent] == [3, 3, 3, 1]  # the first batch twice: a 503, then again


def test_embed_series_and_similar(mhub):
    import pandas as pd

    texts = pd.Series(["red apples", "green apples", "stock market crash", "apple pie"], index=["a", "b", "c", "d"])
    vectors = mhub.embed(texts, model="vec")
    assert list(vectors.index) == ["a", "b", "c", "d"] and vectors["c"].shape == (64,)
    top = mhub.similar("market crash", texts, k=2)
    assert list(top.columns) == ["text", "score"] and top.index[0] == "c" and top["score"].iloc[0] > top["score"].iloc[1]


def test_a_second_pass_is_served_from_memory_and_a_new_kernel_from_the_store(mhub, server):
    from aihub_nb import Hub

    texts = [f"note {i} about cats" for i in range(50)]
    first = mhub.embed(texts, model="vec")
    sent = len([r for r in server.requests if r.path == "/v1/embeddings"])
    assert len(mhub._vectors) == 50  # the kernel keeps what it embedded
    # Memory answers without the store: rows removed behind its back do not matter to this kernel.
    mhub.store.conn.execute('DELETE FROM "EmbeddingCache" WHERE key IN (SELECT key FROM "EmbeddingCache" LIMIT 10)')
    assert np.array_equal(mhub.embed(texts, model="vec"), first)
    assert len([r for r in server.requests if r.path == "/v1/embeddings"]) == sent
    hits = [m["value"] for m in mhub.store.find("Metric") if m["name"] == "cache_hits"]
    assert hits[-1] == 50.0
    with Hub(mhub.home) as other:  # a new kernel: nothing in memory, 40 from the store, 10 sent again
        again = other.embed(texts, model="vec")
        assert np.array_equal(again, first) and len(other._vectors) == 50
    requests = [r for r in server.requests if r.path == "/v1/embeddings"]
    assert len(requests) == sent + 1 and len(requests[-1].json["input"]) == 10


def test_vector_memory_is_bounded_least_recently_used_out(monkeypatch):
    from aihub_nb.embeddings import MEMORY_ENV, VectorMemo

    vector = bytes(256)
    memo = VectorMemo(max_bytes=3 * (256 + 2 + 160))
    memo.put("m", [("t1", vector), ("t2", vector), ("t3", vector)])
    assert memo.get("m", ["t1", "t2", "t3", "x"]) == [vector, vector, vector, None]
    memo.get("m", ["t1"])  # t1 used last: t2 is now the oldest
    memo.put("m", [("t4", vector)])
    assert [v is not None for v in memo.get("m", ["t1", "t2", "t3", "t4"])] == [True, False, True, True]
    assert memo.size <= memo.max_bytes and len(memo) == 3
    assert memo.get("other model", ["t1"]) == [None]
    monkeypatch.setenv(MEMORY_ENV, "0")
    off = VectorMemo()
    off.put("m", [("t1", vector)])
    assert len(off) == 0 and off.get("m", ["t1"]) == [None]
    monkeypatch.setenv(MEMORY_ENV, "lots")
    with pytest.raises(UsageError, match=r"^AIHUB_EMBEDDING_MEMORY_MB is 'lots': set it to a number of MiB"):
        VectorMemo()


def test_embedding_with_no_vector_memory_reads_the_store(mhub, server, monkeypatch):
    from aihub_nb import Hub

    monkeypatch.setenv("AIHUB_EMBEDDING_MEMORY_MB", "0")
    with Hub(mhub.home) as hub:
        first = hub.embed(["a", "b"], model="vec")
        sent = len([r for r in server.requests if r.path == "/v1/embeddings"])
        assert np.array_equal(hub.embed(["b", "a"], model="vec"), first[::-1]) and len(hub._vectors) == 0
        assert len([r for r in server.requests if r.path == "/v1/embeddings"]) == sent


def test_a_text_whose_slot_another_key_holds_is_embedded_right_and_not_cached(mhub, server):
    from aihub_nb.embeddings import _key, cache_model
    from aihub_nb.payloads import vector_slot

    conn_row = mhub.connection("vec")
    key = _key(cache_model(conn_row, mhub.runtime.providers.get(conn_row).url), "a clash")
    # Another key with the same first 60 bits holds the slot, with a vector of its own.
    other = key[:15] + ("0" if key[15] != "0" else "1") + key[16:]
    assert vector_slot(other) == vector_slot(key) and other != key
    mhub.store.conn.execute(
        'INSERT INTO "EmbeddingCache" (id, key, slot, model, dimensions, vector, createdAt, updatedAt) '
        "VALUES ('clash', ?, ?, 'm', 64, ?, 't', 't')", (other, vector_slot(key), np.full(64, 9, "<f4").tobytes()),
    )
    expected = mhub.embed(["not a clash"], model="vec")  # the demo vector of a text, for comparison
    mhub._vectors.clear()
    rows = mhub.store.count("EmbeddingCache")
    got = mhub.embed(["a clash"], model="vec")
    assert not np.any(got == 9) and got.shape == expected.shape
    assert mhub.store.count("EmbeddingCache") == rows  # its slot is taken: not cached
    mhub._vectors.clear()
    before = len([r for r in server.requests if r.path == "/v1/embeddings"])
    assert np.array_equal(mhub.embed(["a clash"], model="vec"), got)  # sent again: the slot is taken
    assert len([r for r in server.requests if r.path == "/v1/embeddings"]) == before + 1
    assert mhub.store.count("EmbeddingCache", key=key) == 0 and mhub.store.get("EmbeddingCache", "clash")["key"] == other


def test_generated_images_are_priced_per_image_else_by_tokens(mhub, server):
    costs = lambda: [m for m in mhub.store.find("Metric") if m["name"] == "cost_usd"]  # noqa: E731
    mhub.image("a boat", model="pics", size="64x48", n=2)
    assert costs() == []  # no price: unpriced
    mhub.set_price("local-image", per_image={"64x48": 0.01, "hd 64x48": 0.05})
    result = mhub.image("a boat", model="pics", size="64x48", n=2)
    assert result.metrics["cost_usd"] == pytest.approx(0.02)
    assert costs()[-1]["dimensions"]["price_source"] == "user"
    mhub.image("a boat", model="pics", size="64x48", quality="hd")
    assert costs()[-1]["value"] == pytest.approx(0.05)
    other = mhub.image("a boat", model="pics", size="32x32")  # no entry for this size: unpriced, not $0
    assert "cost_usd" not in other.metrics and len(costs()) == 2
    mhub.remove_price("local-image")
    mhub.set_price("local-image", 1_000_000, 1_000_000)  # by tokens when there is no per-image price
    priced = mhub.image("a boat", model="pics", size="32x32")
    tokens = priced.metrics["prompt_tokens"] + priced.metrics["completion_tokens"]
    assert tokens > 0 and priced.metrics["cost_usd"] == pytest.approx(tokens)


def test_a_model_served_locally_under_an_openai_name_is_not_priced_as_openai(mhub, server):
    server.aliases = {"text-embedding-3-small": "local-embed"}
    try:
        mhub.connect("OPENAI", "text-embedding-3-small", name="lookalike", base_url=server.openai_base_url, type="EMBEDDING")
        mhub.embed(["some text"], model="lookalike")
    finally:
        server.aliases = {}
    assert [m for m in mhub.store.find("Metric") if m["name"] == "prompt_tokens"] and not [
        m for m in mhub.store.find("Metric") if m["name"] == "cost_usd"
    ]  # genai-prices knows text-embedding-3-small, but this is not OpenAI's API
    from aihub_nb import monitoring

    assert monitoring.turn_cost(mhub.store, "OPENAI", "text-embedding-3-small", 1000, 0) > 0  # at OpenAI it is priced


# -- images in chats, through the hub --------------------------------------------------------------
def test_chat_send_with_images_stores_once_and_resends_history(mhub, server, tmp_path):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 1), dpi=40)
    ax.plot([1, 3, 2])
    chat = mhub.chat("look", model="local")
    reply = chat.send("what is this?", images=[fig, draw("x", 10, 8)])
    plt.close(fig)
    assert "I see 2 images: " in reply.text and reply.text.endswith(", 10x8 PNG.")
    user = chat.messages()[0]
    refs = user["data"]["images"]
    media = MediaStore.beside(mhub.store)
    assert len(refs) == 2 and image_size(media.read(refs[1])) == (10, 8)
    chat.send("and now?")
    history = server.requests[-1].json["messages"]
    assert history[0]["content"][2]["image_url"]["url"].startswith("data:image/png;base64,")  # re-sent
    calls = mhub.store.find("NetworkCall")[-2:]
    assert all("base64," not in c["body"] and refs[1] in c["body"] for c in calls)


@pytest.mark.parametrize("kind", KINDS)
def test_a_model_refusing_images_gets_one_line(mhub, server, kind):
    server.text_only_models = {"local-tools"}
    try:
        where = {"base_url": server.openai_base_url} if kind == "OPENAI" else {"host": server.ollama_host}
        mhub.connect(kind, "local-tools", name="texty", **where)
        sent = len(server.requests)
        with pytest.raises(ProviderError, match=r"^Connection 'texty': model 'local-tools' does not take images .*vision model"):
            mhub.chat("t", model="texty").send("see", images=[draw("x", 4, 4)])
        assert len(server.requests) == sent + 1  # not retried: the request is the cause (Ollama answers 500)
        assert mhub.store.find("Jobs")[-1]["status"] == "failed"
    finally:
        server.text_only_models = set()


def test_an_embedding_response_is_recorded_whole_with_its_vectors_in_the_cache(mhub, server):
    import openai

    from aihub_nb.store import Store

    texts = ["a cat", "a dog", "a bird"]
    mhub.embed(["a dog"], model="vec")  # cached before: the next response's vector for it is the cache's
    mhub.embed(texts, model="vec")
    call = mhub.store.find("NetworkCall")[-1]
    client = openai.OpenAI(base_url=server.openai_base_url, api_key="x", max_retries=0)
    wire = client.embeddings.with_raw_response.create(model="local-embed", input=["a cat", "a bird"], encoding_format="base64")
    assert call["response"] == wire.http_response.text  # read back exactly as received
    frame = mhub.network_calls()
    assert frame["response"].iloc[-1] == wire.http_response.text
    reopened = Store(mhub.store.path)  # another kernel reads the same
    assert reopened.get("NetworkCall", call["id"])["response"] == wire.http_response.text
    # stored: a reference to each vector's cache row, not its base64 a second time
    stored = mhub.store.conn.execute('SELECT response FROM "NetworkCall" WHERE id = ?', (call["id"],)).fetchone()[0]
    vector = base64.b64encode(mhub.store.first("EmbeddingCache")["vector"]).decode()
    assert stored.count('"EmbeddingCache:') == 2 and vector not in stored and len(stored) < 600
    assert mhub.store.count("EmbeddingCache") == 3


def test_an_embedding_response_that_cannot_be_referenced_is_kept_as_it_came(tmp_path):
    from aihub_nb.payloads import store_vectors, vector_slot
    from aihub_nb.store import Store

    store = Store(tmp_path / "x.db")
    vector = np.arange(4, dtype="<f4").tobytes()
    canonical = base64.b64encode(vector).decode()
    k0, k1 = "0a" * 32, "1b" * 32
    keys = [k0, k1]
    text = '{"data":[{"index":0,"embedding":"%s"},{"index":1,"embedding":"%s"}]}'
    with store.transaction() as conn:
        assert store_vectors(conn, text % (canonical, "EmbeddingCache:" + "0" * 64), "m", keys, "t") is None
        assert store_vectors(conn, text % (canonical, canonical[:-2] + "B="), "m", keys, "t") is None  # not canonical
        conn.execute('INSERT INTO "EmbeddingCache" (id, key, slot, model, dimensions, vector, createdAt, updatedAt) '
                     "VALUES ('k1', ?, ?, 'm', 4, ?, 't', 't')", (k1, vector_slot(k1), bytes(16)))
        stored = store_vectors(conn, text % (canonical, canonical), "m", keys, "t")
    # k0 is kept in the cache and referenced; k1's cached vector differs, so its base64 stays
    assert stored == text % ("EmbeddingCache:" + k0, canonical)


def test_a_hub_opened_on_its_database_file_or_on_another_file(tmp_path):
    from aihub_nb import Hub

    with Hub(tmp_path / "h") as hub:
        hub.store.create("Chat", name="kept")
    with Hub(tmp_path / "h" / "aihub.db") as same:  # the database file: its folder is the hub
        assert same.home == tmp_path / "h" and same.store.first("Chat", name="kept") is not None
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(UsageError, match=r"^Hub\(\) takes the hub's folder .* is a file: pass its folder"):
        Hub(tmp_path / "notes.txt")


def test_a_cache_made_before_slots_upgrades_and_keeps_serving(mhub, server):
    from aihub_nb import Hub
    from aihub_nb.payloads import vector_slot

    first = mhub.embed(["a cat", "a dog"], model="vec")
    wire = mhub.network_calls()["response"].iloc[-1]
    conn = mhub.store.conn
    # The cache as it was: ids that are the keys, a unique index on the key, no slot column.
    for sql in (
        'DROP INDEX "uq_EmbeddingCache_slot"', 'ALTER TABLE "EmbeddingCache" DROP COLUMN slot',
        'UPDATE "EmbeddingCache" SET id = key', 'CREATE UNIQUE INDEX "uq_EmbeddingCache_key" ON "EmbeddingCache" (key)',
        "DELETE FROM _aihub_migrations WHERE name = 'm003_embedding_slots'",
    ):
        conn.execute(sql)
    sent = len([r for r in server.requests if r.path == "/v1/embeddings"])
    with Hub(mhub.home) as hub:
        indexes = {r[0] for r in hub.store.conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert "uq_EmbeddingCache_slot" in indexes and "uq_EmbeddingCache_key" not in indexes
        rows = hub.store.find("EmbeddingCache")
        assert len(rows) == 2 and all(r["slot"] == vector_slot(r["key"]) and r["id"] == r["key"] for r in rows)
        assert np.array_equal(hub.embed(["a dog", "a cat"], model="vec"), first[::-1])
        assert hub.network_calls()["response"].iloc[-1] == wire  # recorded vectors still read back
        assert len([r for r in server.requests if r.path == "/v1/embeddings"]) == sent


@pytest.mark.parametrize("quirk", ["floats", "reversed", "no-index"])
def test_embeddings_from_servers_that_answer_otherwise(mhub, server, quirk):
    expected = mhub.embed(["one text", "another text", "a third"], model="vec")
    mhub._vectors.clear()
    mhub.store.conn.execute('DELETE FROM "EmbeddingCache"')
    server.embedding_quirks = {quirk}
    try:
        got = mhub.embed(["one text", "another text", "a third"], model="vec")
    finally:
        server.embedding_quirks = set()
    assert np.array_equal(got, expected)  # each vector with its own text
    import json

    recorded = json.loads(mhub.network_calls()["response"].iloc[-1])["data"]  # read back whole
    for position, item in enumerate(recorded):
        value = item["embedding"]
        vector = np.frombuffer(base64.b64decode(value), "<f4") if isinstance(value, str) else np.asarray(value, "<f4")
        assert np.array_equal(vector, expected[item.get("index", position)])
    assert [type(i["embedding"]) for i in recorded] == [list if quirk == "floats" else str] * 3
    stored = mhub.store.conn.execute('SELECT response FROM "NetworkCall" ORDER BY rowid DESC LIMIT 1').fetchone()[0]
    assert stored.count('"EmbeddingCache:') == (0 if quirk == "floats" else 3)  # base64 vectors by reference
    mhub._vectors.clear()
    before = len([r for r in server.requests if r.path == "/v1/embeddings"])
    assert np.array_equal(mhub.embed(["a third", "one text"], model="vec"), expected[[2, 0]])  # from the cache
    assert len([r for r in server.requests if r.path == "/v1/embeddings"]) == before
