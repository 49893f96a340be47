"""Image generation: a prompt to an IMAGE connection, the images kept in the media folder, the
prompt and the images kept as two Messages of a chat's thread.

`generate_images` runs one job: it locks the thread, writes the prompt Message (user), calls the
provider (429 and 5xx retried like chat turns), keeps each image once (aihub_nb.media), writes the
image Message (`data.images`: the `media:` references; `content`: the revised prompt, if any) and
records `latency_ms`, `images` and `cost_usd` (when the model has a price: per image, else by
tokens). A failure leaves the prompt, the failed job and the network call recorded. The result is
an `ImageResult`.
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ProviderError, UsageError
from .jobs import JobRun, release_thread
from .media import MediaStore, data_url, image_size

if TYPE_CHECKING:
    from .providers.base import Provider
    from .recording import Recorder
    from .store import Store

__all__ = ["ImageResult", "check_size", "generate_images"]

MAX_RETRIES = 3


@dataclass
class ImageResult:
    """What an image request made: `images` (PNG/JPEG bytes each), their `refs` in the media
    folder, the chat and the ids of what was stored. Shows itself inline in a notebook."""

    images: list[bytes]
    refs: list[str]
    prompt: str
    chat: str | None = None
    revised_prompt: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    ids: dict[str, Any] = field(default_factory=dict)

    def save(self, path: str | Path) -> list[Path]:
        """Write the images: to `path` itself for one image, else `<stem>-1<suffix>`, `<stem>-2...`."""
        path = Path(path).expanduser()
        if not self.images:
            return []
        targets = [path] if len(self.images) == 1 else [path.with_name(f"{path.stem}-{i}{path.suffix}") for i in range(1, len(self.images) + 1)]
        for target, data in zip(targets, self.images):
            target.write_bytes(data)
        return targets

    def _repr_png_(self) -> bytes | None:
        return self.images[0] if self.images else None

    def _repr_html_(self) -> str:
        """The images as inline data: PNGs, in an <img> built here (never from model text), and the
        prompt escaped."""
        tags = "".join(
            f'<img src="{data_url(data)}" alt="generated image {i + 1}" style="max-width:100%;margin:2px"/>'
            for i, data in enumerate(self.images)
        )
        caption = html.escape(self.revised_prompt or self.prompt)
        return f'<div class="aihub-images">{tags}<div style="opacity:.7">{caption}</div></div>'

    def __repr__(self) -> str:
        sizes = ", ".join(f"{w}x{h}" for w, h in (image_size(d) or (0, 0) for d in self.images))
        return f"<ImageResult {len(self.images)} image(s) {sizes} for {self.prompt[:40]!r}>"


def check_size(size: str | None) -> str | None:
    """A size "WxH" (or "auto"), checked before anything is sent."""
    if size is None or size == "auto":
        return size
    parts = str(size).lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() and 0 < int(p) <= 8192 for p in parts):
        raise UsageError(f"Size {size!r} is not WIDTHxHEIGHT; use e.g. --size 1024x1024 (or auto).")
    return f"{int(parts[0])}x{int(parts[1])}"


def generate_images(
    store: Store,
    provider: Provider,
    connection: dict[str, Any],
    prompt: str,
    *,
    size: str | None = None,
    n: int = 1,
    quality: str | None = None,
    chat: dict[str, Any] | None = None,
    record_metrics: Callable[..., None],
    recorder: Recorder,
    price: Callable[[int | None, int | None, int, str | None, str | None], tuple[float, str] | None] | None = None,
) -> ImageResult:
    """Generate images for `prompt`; with `chat` (a Chat row), the prompt and images join its thread.
    `price(prompt_tokens, completion_tokens, images, size, quality)` gives (cost, price source) or None."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise UsageError("Nothing to draw: the prompt is empty; write it in the cell below the magic.")
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 10:
        raise UsageError(f"n must be a whole number from 1 to 10, not {n!r}.")
    size = check_size(size)
    media = MediaStore.beside(store)
    thread_id = (chat or {}).get("references", {}).get("thread")
    refs = {"connection": connection["id"], **({"chat": chat["id"], "thread": thread_id} if chat else {})}
    run = JobRun(store, f"image: {prompt[:40]}", "image", references=refs)
    result = ImageResult(images=[], refs=[], prompt=prompt, chat=(chat or {}).get("name"), ids={"job": run.id})
    dims = {"provider": connection["provider"], "model": connection["modelId"], "connection": connection["name"]}
    if chat:
        dims["chat"] = chat["name"]
    started = time.perf_counter()
    try:
        run.start(lock=thread_id, label=f"Chat {chat['name']!r}" if chat else "This thread")
        if thread_id:
            message = store.create("Message", threadId=thread_id, type="user", sourceId="user", content=prompt)
            result.ids["prompt"] = message["id"]
        with recorder.call(job=run.id):
            answer = _with_retries(provider, connection, prompt, size=size, n=n, quality=quality, run=run)
        for image in answer.images:
            result.images.append(image.data)
            result.refs.append(media.put(image.data, image.mime))
        result.revised_prompt = next((i.revised_prompt for i in answer.images if i.revised_prompt), None)
        if thread_id:
            message = store.create(
                "Message", threadId=thread_id, type="chatModel", sourceId=connection["id"],
                content=result.revised_prompt if result.revised_prompt and result.revised_prompt != prompt else "",
                data={"images": result.refs},
            )
            result.ids["message"] = message["id"]
        values: dict[str, float] = {"latency_ms": round((time.perf_counter() - started) * 1000, 3), "images": len(result.images)}
        tokens_in = tokens_out = None
        if answer.usage is not None:
            values["prompt_tokens"] = tokens_in = int(answer.usage.prompt_tokens or 0)
            values["completion_tokens"] = tokens_out = int(answer.usage.completion_tokens or 0)
        priced = price(tokens_in, tokens_out, len(result.images), size, quality) if price else None
        done = {**dims, "status": "completed"}
        if priced is not None:
            values["cost_usd"], done["price_source"] = priced  # "user" or "genai-prices <version>"
        result.metrics = values
        record_metrics(values, done, references={"job": run.id})
        run.log(f"{len(result.images)} image(s) kept: {', '.join(result.refs)}")
    except BaseException as exc:
        failed = {"latency_ms": round((time.perf_counter() - started) * 1000, 3), "images": 0, "error": 1.0}
        record_metrics(failed, {**dims, "status": "failed"}, references={"job": run.id})
        run.finish(exc)
        raise
    finally:
        if thread_id:
            release_thread(store, thread_id, run.id)
    run.finish()
    return result


def _with_retries(provider: Provider, connection: dict[str, Any], prompt: str, *, size, n, quality, run: JobRun):
    for attempt in range(MAX_RETRIES + 1):
        try:
            return provider.generate_images(connection["modelId"], prompt, size=size, n=n, quality=quality)
        except ProviderError as exc:
            if not exc.retryable or attempt == MAX_RETRIES:
                raise
            wait = min(max(exc.retry_after or 0.5 * 2**attempt, 0.25), 30.0)
            run.log(f"attempt {attempt + 1} failed ({exc}); retrying in {wait:.2f}s")
            time.sleep(wait)
    raise AssertionError("unreachable")
