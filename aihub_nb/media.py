"""Images kept once, content-addressed, as files beside the store: `<home>/media/<sha256>.<ext>`.

    media = MediaStore.beside(store)            # <home>/media, created 0700 on first write
    ref = media.put(png_bytes)                  # "media:3f2a...e1.png" (files 0600)
    media.read(ref)                             # the bytes again

`image_bytes(obj)` turns what a notebook user holds into image bytes and a MIME type: a path, bytes,
a PIL image, a matplotlib Figure, or an `IPython.display.Image` (each library imported only when
such an object is given). `image_size` reads the width and height from the file's header.

`externalize(text, media)` replaces each base64 image in recorded request or response text (a
`data:image/...;base64,` URL, OpenAI's `b64_json`, Ollama's `images`) by its `media:` reference,
and other long base64 payloads (embedding vectors) by a short note of their size, so the
database does not hold megabytes of base64.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import os
import re
import struct
from pathlib import Path
from typing import Any

from .errors import UsageError

__all__ = [
    "MEDIA_PREFIX",
    "MediaStore",
    "data_url",
    "externalize",
    "image_bytes",
    "image_size",
    "message_images",
    "mime_of",
]

MEDIA_PREFIX = "media:"
_EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/gif": "gif", "image/webp": "webp"}
_MIMES = {ext: mime for mime, ext in _EXTENSIONS.items()} | {"jpeg": "image/jpeg"}
_REF_RE = re.compile(r"^media:([0-9a-f]{64})\.(png|jpg|gif|webp)$")
# A JSON string that is (or ends in) a long run of base64: a data URL or a bare payload.
_BASE64_RE = re.compile(r'"(data:image/[a-z+.-]+;base64,)?([A-Za-z0-9+/]{64,}={0,2})"')
_KEEP_BELOW = 1024  # base64 that is no image is kept as it is below this length


def mime_of(data: bytes) -> str | None:
    """The image type of `data` from its first bytes (PNG, JPEG, GIF, WebP), or None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) read from the header of a PNG, GIF, JPEG or WebP; None if unreadable."""
    try:
        mime = mime_of(data)
        if mime == "image/png":
            return struct.unpack(">II", data[16:24])
        if mime == "image/gif":
            return struct.unpack("<HH", data[6:10])
        if mime == "image/webp":
            if data[12:16] == b"VP8X":
                return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
            if data[12:16] == b"VP8L":
                bits = int.from_bytes(data[21:25], "little")
                return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
            w, h = struct.unpack("<HH", data[26:30])
            return w & 0x3FFF, h & 0x3FFF
        if mime == "image/jpeg":
            i = 2
            while i + 9 < len(data):
                if data[i] != 0xFF:
                    return None
                marker = data[i + 1]
                length = struct.unpack(">H", data[i + 2 : i + 4])[0]
                if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                    h, w = struct.unpack(">HH", data[i + 5 : i + 9])
                    return w, h
                i += 2 + length
    except struct.error:
        return None
    return None


def data_url(data: bytes, mime: str | None = None) -> str:
    """`data:<mime>;base64,...` for image bytes."""
    return f"data:{mime or mime_of(data) or 'application/octet-stream'};base64,{base64.b64encode(data).decode()}"


def image_bytes(obj: Any) -> tuple[bytes, str]:
    """(bytes, MIME type) of an image given as a path, bytes, a PIL image, a matplotlib Figure or an
    `IPython.display.Image`; a UsageError saying what is accepted otherwise."""
    data: bytes | None = None
    if isinstance(obj, (bytes, bytearray, memoryview)):
        data = bytes(obj)
    elif isinstance(obj, (str, os.PathLike)):
        path = Path(obj).expanduser()
        if not path.is_file():
            raise UsageError(f"No image file at {str(path)!r}; give the path of a PNG, JPEG, GIF or WebP file.")
        data = path.read_bytes()
    elif hasattr(obj, "savefig"):  # a matplotlib Figure
        buffer = io.BytesIO()
        obj.savefig(buffer, format="png", bbox_inches="tight")
        data = buffer.getvalue()
    elif type(obj).__module__.startswith("PIL.") and hasattr(obj, "save"):
        buffer = io.BytesIO()
        image = obj if obj.mode in ("RGB", "RGBA", "L", "LA", "P") else obj.convert("RGBA")
        image.save(buffer, format="PNG")
        data = buffer.getvalue()
    elif type(obj).__name__ == "Image" and type(obj).__module__.startswith("IPython"):
        data = obj.data if isinstance(obj.data, bytes) else None
        if data is None and getattr(obj, "filename", None):
            data = Path(obj.filename).read_bytes()
        if data is None and getattr(obj, "url", None):
            raise UsageError("An IPython Image given by URL is not fetched; download it and give the file or its bytes.")
    if data is None:
        raise UsageError(
            f"Cannot use a {type(obj).__name__} as an image; give a path, bytes, a PIL image, "
            "a matplotlib Figure or an IPython.display.Image."
        )
    mime = mime_of(data)
    if mime is None:
        raise UsageError("The image is not a PNG, JPEG, GIF or WebP; convert it to PNG first.")
    return data, mime


class MediaStore:
    """Content-addressed image files in one folder (0700), each file 0600."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)

    @classmethod
    def beside(cls, store: Any) -> MediaStore:
        """The media folder of the hub whose database is `store`: `<home>/media`."""
        return cls(Path(store.path).parent / "media")

    def put(self, data: bytes, mime: str | None = None) -> str:
        """Keep `data` (once: the same bytes make the same file) and return its `media:` reference."""
        mime = mime or mime_of(data)
        ext = _EXTENSIONS.get(mime or "")
        if ext is None:
            raise UsageError("Only PNG, JPEG, GIF and WebP images can be kept; convert it to PNG first.")
        name = f"{hashlib.sha256(data).hexdigest()}.{ext}"
        path = self.folder / name
        if not path.exists():
            self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            temporary = self.folder / f".{name}.{os.getpid()}.tmp"
            fd = os.open(temporary, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(temporary, path)  # readers see the whole file or none
        return MEDIA_PREFIX + name

    def path(self, ref: str) -> Path:
        """The file of a `media:` reference."""
        match = _REF_RE.match(ref or "")
        if match is None:
            raise UsageError(f"{ref!r} is not a media reference (media:<sha256>.<ext>).")
        return self.folder / f"{match.group(1)}.{match.group(2)}"

    def read(self, ref: str) -> bytes:
        path = self.path(ref)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise UsageError(f"The image {ref} is missing from {self.folder}; it was deleted outside aihub_nb.") from None

    @staticmethod
    def mime(ref: str) -> str:
        return _MIMES[ref.rsplit(".", 1)[-1]]


def message_images(messages: list[dict[str, Any]], media: MediaStore) -> dict[str, tuple[str, bytes]]:
    """{ref: (MIME type, bytes)} of the images `messages` reference (`data.images`), read from
    `media`; a file gone missing is left out (the view says the image is not available)."""
    found: dict[str, tuple[str, bytes]] = {}
    for message in messages:
        for ref in (message.get("data") or {}).get("images") or []:
            if is_ref(ref) and ref not in found:
                try:
                    found[ref] = (MediaStore.mime(ref), media.path(ref).read_bytes())
                except OSError:
                    continue
    return found


def is_ref(value: object) -> bool:
    return isinstance(value, str) and _REF_RE.match(value) is not None


def externalize(text: str, media: MediaStore) -> str:
    """`text` (a recorded JSON body) with each base64 image kept in `media` and replaced by its
    `media:` reference, and each other long base64 payload by a note of its size."""
    if len(text) < 64:
        return text

    def replace(match: re.Match) -> str:
        payload = match.group(2)
        if not match.group(1) and not payload.startswith(("iVBOR", "/9j/", "R0lG", "UklG")) and len(payload) < _KEEP_BELOW:
            return match.group(0)
        try:
            data = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            return match.group(0)
        mime = mime_of(data)
        if mime is not None:
            return f'"{media.put(data, mime)}"'
        if len(payload) < _KEEP_BELOW:
            return match.group(0)
        return f'"[base64, {len(data)} bytes, not kept]"'

    return _BASE64_RE.sub(replace, text)
