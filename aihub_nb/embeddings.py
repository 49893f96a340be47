"""Embeddings: texts to vectors through an EMBEDDING connection, with a cache in the store.

`embed_texts` looks each text up in `EmbeddingCache` (keyed by the model and the text), sends only
the texts not found, in batches of at most the provider's limit (OpenAI: 2,048 inputs), retries
429 and 5xx answers like chat turns, keeps the new vectors (float32 bytes), and records one job and
per request the metrics `latency_ms`, `prompt_tokens`, `inputs`, `cache_hits` and `cost_usd`
(when the model has a price). `nearest` ranks texts by cosine similarity in numpy.

numpy is imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .errors import ProviderError, UsageError
from .jobs import JobRun
from .store import now_iso

if TYPE_CHECKING:
    from .providers.base import Provider
    from .recording import Recorder
    from .store import Store

__all__ = ["MAX_RETRIES", "cache_model", "embed_texts", "nearest"]

MAX_RETRIES = 3
MAX_BACKOFF = 30.0
MIN_BACKOFF = 0.25


def cache_model(connection: dict[str, Any], endpoint: str) -> str:
    """What identifies the vectors a connection makes: provider, endpoint and model id."""
    return f"{connection['provider']} {endpoint} {connection['modelId']}"


def _key(model: str, text: str) -> str:
    return hashlib.sha256(f"{model}\x00{text}".encode()).hexdigest()


def embed_texts(
    store: Store,
    provider: Provider,
    connection: dict[str, Any],
    texts: list[str],
    *,
    model_key: str,
    record_metrics: Callable[..., None],
    recorder: Recorder,
    price: Callable[[int], float | None] | None = None,
    progress: Callable[[int, int], None] | None = None,
    batch_size: int | None = None,
):
    """The vectors of `texts` as a float32 array (len(texts) x d), from the cache where it has
    them; `progress(done, total)` is called after each request."""
    import numpy as np

    for index, text in enumerate(texts):
        if not isinstance(text, str) or not text:
            raise UsageError(f"Text {index} is {text!r}: every text to embed must be a non-empty string.")
    keys = [_key(model_key, t) for t in texts]
    found = _lookup(store, keys)
    missing: dict[str, str] = {}  # key -> text, each distinct text once, in order
    for key, text in zip(keys, texts):
        if key not in found and key not in missing:
            missing[key] = text
    limit = max(1, min(batch_size or provider.max_embedding_inputs, provider.max_embedding_inputs))
    run = JobRun(store, f"embed: {len(texts)} texts", "embed", references={"connection": connection["id"]})
    dims = {"provider": connection["provider"], "model": connection["modelId"], "connection": connection["name"]}
    hits = len(texts) - sum(1 for key in keys if key in missing)
    try:
        run.start()
        run.log(f"{len(texts)} texts, {hits} from the cache, {len(missing)} to send in batches of {limit}")
        pending = list(missing.items())
        if not pending:
            record_metrics({"latency_ms": 0.0, "inputs": 0, "cache_hits": hits}, {**dims, "status": "completed"}, references={"job": run.id})
        for start in range(0, len(pending), limit):
            batch = pending[start : start + limit]
            started = time.perf_counter()
            try:
                result = _with_retries(provider, connection, batch, run, recorder, model_key)
            except BaseException:
                values = {"latency_ms": round((time.perf_counter() - started) * 1000, 3), "inputs": len(batch), "error": 1.0}
                record_metrics(values, {**dims, "status": "failed"}, references={"job": run.id})
                raise
            latency = (time.perf_counter() - started) * 1000
            vectors = result.vectors
            if len(vectors) != len(batch):
                raise ProviderError(
                    f"Connection '{connection['name']}' answered {len(vectors)} vectors for {len(batch)} texts; "
                    "check that the model is an embedding model.",
                    connection=connection["name"],
                )
            for (key, _), vector in zip(batch, _remember(store, model_key, [key for key, _ in batch], vectors)):
                found[key] = vector
            values: dict[str, float] = {"latency_ms": round(latency, 3), "inputs": len(batch), "cache_hits": hits if start == 0 else 0}
            if result.prompt_tokens is not None:
                values["prompt_tokens"] = result.prompt_tokens
                cost = price(result.prompt_tokens) if price else None
                if cost is not None:
                    values["cost_usd"] = cost
            record_metrics(values, {**dims, "status": "completed"}, references={"job": run.id})
            if progress:
                progress(min(start + limit, len(pending)), len(pending))
    except BaseException as exc:
        run.finish(exc)
        raise
    run.finish()
    if not keys:
        return np.zeros((0, 0), dtype=np.float32)
    # One copy of all the bytes, read as an n x d array: no per-row arrays.
    data = b"".join([found[key] for key in keys])
    return np.frombuffer(data, dtype="<f4").reshape(len(keys), -1).copy()


def _with_retries(
    provider: Provider, connection: dict[str, Any], batch: list[tuple[str, str]], run: JobRun, recorder: Recorder,
    model_key: str,
):
    """The provider's answer for the (key, text) pairs of `batch`; the recording keeps the vectors
    in the cache under those keys and its response refers to them."""
    texts = [text for _, text in batch]
    with recorder.call(job=run.id, embedding_keys=(model_key, [key for key, _ in batch])):
        for attempt in range(MAX_RETRIES + 1):
            try:
                return provider.embed(connection["modelId"], texts)
            except ProviderError as exc:
                if not exc.retryable or attempt == MAX_RETRIES:
                    raise
                wait = _backoff(attempt, exc.retry_after)
                run.log(f"attempt {attempt + 1} failed ({exc}); retrying in {wait:.2f}s")
                time.sleep(wait)
    raise AssertionError("unreachable")


def _backoff(attempt: int, retry_after: float | None) -> float:
    if retry_after is not None and retry_after >= 0:
        return min(max(float(retry_after), MIN_BACKOFF), MAX_BACKOFF)
    return min(0.5 * (2**attempt), MAX_BACKOFF)


def _lookup(store: Store, keys: list[str]) -> dict[str, bytes]:
    """The cached vectors of `keys`, in one query (the keys go in as one JSON array)."""
    if not keys:
        return {}
    distinct = json.dumps(list(dict.fromkeys(keys)))
    sql = 'SELECT key, vector FROM "EmbeddingCache" WHERE key IN (SELECT value FROM json_each(?))'
    return dict(store.conn.execute(sql, (distinct,)).fetchall())


def _remember(store: Store, model_key: str, keys: list[str], vectors: Any) -> list[bytes]:
    """Keep new vectors in one transaction, each row's id its key (unique per model and text);
    rows already there (the recording keeps the vectors it stores; another kernel may have
    cached a text meanwhile) keep their first vector. Returns the vectors' bytes."""
    import numpy as np

    matrix = np.ascontiguousarray(np.asarray(vectors, dtype="<f4"))
    dimensions = int(matrix.shape[1]) if matrix.ndim == 2 else 0
    blobs = [row.tobytes() for row in matrix]
    sql = 'SELECT key FROM "EmbeddingCache" WHERE key IN (SELECT value FROM json_each(?))'
    have = {row[0] for row in store.conn.execute(sql, (json.dumps(keys),))}
    if len(have) == len(set(keys)):
        return blobs
    now = now_iso()
    rows = [(key, "{}", now, now, key, model_key, dimensions, blob) for key, blob in zip(keys, blobs) if key not in have]
    with store.transaction() as conn:
        conn.executemany(
            'INSERT OR IGNORE INTO "EmbeddingCache" (id, "references", createdAt, updatedAt, key, model, dimensions, vector) '
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    return blobs


def nearest(query_vector: Any, vectors: Any, k: int) -> tuple[Any, Any]:
    """(indices, scores) of the `k` rows of `vectors` most cosine-similar to `query_vector`, best first."""
    import numpy as np

    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise UsageError(f"k must be a whole number from 1 up, not {k!r}.")
    matrix = np.asarray(vectors, dtype=np.float32)
    query = np.asarray(query_vector, dtype=np.float32).ravel()
    norms = np.linalg.norm(matrix, axis=1) * (np.linalg.norm(query) or 1.0)
    scores = (matrix @ query) / np.where(norms == 0, 1.0, norms)
    k = min(k, len(scores))
    top = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
    order = top[np.argsort(-scores[top], kind="stable")]
    return order, scores[order]


