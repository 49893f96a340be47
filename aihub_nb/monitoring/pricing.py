"""Prices per million tokens and per image (the ModelPrice table) and the cost of one call.

    >>> set_price(store, "gpt-4o-mini", 0.15, 0.60, provider="OPENAI")    # USD per million tokens
    >>> turn_cost(store, "OPENAI", "gpt-4o-mini", 1000, 200)
    0.00027
    >>> set_price(store, "dall-e-3", per_image={"1024x1024": 0.04, "hd 1024x1024": 0.08})
    >>> image_price(store, "OPENAI", "dall-e-3", 2, size="1024x1024", quality="hd")
    (0.16, 'user')

`turn_price` gives the cost and where its price came from: the user's table ("user") wins; else
the `genai-prices` package's bundled table for models it knows at a provider it knows
("genai-prices <version>"), read offline, with cached input tokens at the table's cache rate.
`turn_cost` returns None for a model without a price, so "unpriced" is never mistaken for $0.
`image_price` prices generated images by the user's per-image price (the most specific of
"QUALITY SIZE", "QUALITY", "SIZE" and "*" when it is a table), or None.
"""

from __future__ import annotations

import json
import math
import re
from typing import TYPE_CHECKING, Any

from ..errors import UsageError
from .loader import load, ms

if TYPE_CHECKING:
    import pandas as pd

    from ..store import Store

__all__ = [
    "image_price", "images_cost", "package_price", "per_image_for", "price_for", "prices", "remove_price", "set_price", "turn_cost", "turn_price",
]

USER_SOURCE = "user"
_OPENAI_URL = "https://api.openai.com/v1"
# What a per-image price table is keyed by: "*", a size, a quality, or "quality size".
_IMAGE_KEY = re.compile(r"\*|\d+x\d+|[a-z][a-z0-9_-]*|[a-z][a-z0-9_-]* \d+x\d+")

def _provider_key(provider: str | None) -> str:
    return (provider or "").strip().upper()


def set_price(
    store: "Store",
    model: str,
    input_per_million: float | None = None,
    output_per_million: float | None = None,
    /,
    provider: str = "",
    currency: str = "USD",
    *,
    per_image: float | dict[str, float] | None = None,
) -> dict[str, Any]:
    """Set (or change) the price of a model, in USD: per million input and output tokens, and for
    image models billed per image, `per_image` (a number, or prices by size and quality:
    {"1024x1024": 0.04, "hd 1024x1024": 0.08, "*": 0.04}). What is not given keeps its earlier
    value (token prices start at 0).

    provider "" prices the model whatever the provider; a provider-specific price wins over it.
    """
    if not model:
        raise UsageError("set_price needs a model id, e.g. set_price(store, 'gpt-4o-mini', 0.15, 0.60).")
    if input_per_million is None and output_per_million is None and per_image is None:
        raise UsageError(
            f"Give {model!r} a price: input and output USD per million tokens (e.g. 0.15 and 0.60), or per_image (e.g. 0.04)."
        )
    given = [v for v in (input_per_million, output_per_million) if v is not None]
    try:
        numbers = [float(v) for v in given]
    except (TypeError, ValueError):
        numbers = [math.nan]
    if not all(math.isfinite(v) for v in numbers):
        raise UsageError(
            f"Prices are numbers per million tokens, e.g. 0.15 and 0.60 (got {input_per_million!r}, {output_per_million!r})."
        )
    if any(v < 0 for v in numbers):
        raise UsageError(f"Prices cannot be negative (got {input_per_million}, {output_per_million}).")
    if str(currency).strip().upper() != "USD":  # turns record cost_usd: another currency would be mislabelled
        raise UsageError(f"Costs are kept in USD; give the prices in USD, not {currency!r}.")
    images = _per_image(per_image) if per_image is not None else None
    provider = _provider_key(provider)
    with store.transaction():
        row = store.first("ModelPrice", provider=provider, modelId=model)
        fields: dict[str, Any] = {"currency": currency.upper()}
        if input_per_million is not None or row is None:
            fields["inputPerMillion"] = float(input_per_million or 0.0)
        if output_per_million is not None or row is None:
            fields["outputPerMillion"] = float(output_per_million or 0.0)
        if images is not None:
            fields["perImage"] = images
        if row is None:
            return store.create("ModelPrice", provider=provider, modelId=model, **fields)
        return store.update("ModelPrice", row["id"], **fields)


def _per_image(value: Any) -> float | dict[str, float]:
    """A per-image price checked: a number >= 0, or a table of them keyed by size and quality."""
    example = 'per_image=0.04, or per_image={"1024x1024": 0.04, "hd 1024x1024": 0.08, "*": 0.04}'

    def number(v: Any) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise UsageError(f"A price per image is a number of USD from 0 up, not {v!r}: {example}.")
        return float(v)

    if isinstance(value, dict):
        table = {}
        for key, v in value.items():
            name = " ".join(str(key).lower().split())
            if not _IMAGE_KEY.fullmatch(name):
                raise UsageError(f"Per-image prices are keyed by size, quality, 'quality size' or '*', not {key!r}: {example}.")
            table[name] = number(v)
        if not table:
            raise UsageError(f"The per-image price table is empty: {example}.")
        return table
    return number(value)


def per_image_for(store: "Store", provider: str | None, model: str, /) -> float | dict[str, float] | None:
    """The user's per-image price of a model (a number or a table by size and quality): the
    provider's own row, else the provider-less row; None when it has none."""
    rows = store.query(
        'SELECT "perImage" FROM "ModelPrice" WHERE "modelId" = ? AND "provider" IN (?, \'\') AND "perImage" IS NOT NULL '
        'ORDER BY ("provider" = \'\'), rowid DESC LIMIT 1',
        [model, _provider_key(provider)],
    )
    if not rows:
        return None
    price = rows[0]["perImage"]
    if isinstance(price, str):  # the raw column when read by query()
        try:
            price = json.loads(price)
        except ValueError:
            return None
    return price if isinstance(price, (int, float, dict)) and not isinstance(price, bool) else None


def image_price(
    store: "Store", provider: str | None, model: str, images: int, /, *, size: str | None = None, quality: str | None = None,
) -> tuple[float, str] | None:
    """(cost in USD, "user") of `images` generated images at the user's per-image price, or None
    when the model has none, or its table has no entry for this size and quality (unpriced: the
    table's model is priced per image only, so tokens do not stand in for it)."""
    return images_cost(per_image_for(store, provider, model), images, size=size, quality=quality)


def images_cost(
    per_image: float | dict[str, float] | None, images: int, /, *, size: str | None = None, quality: str | None = None,
) -> tuple[float, str] | None:
    """(cost, "user") of `images` at a per-image price (see `per_image_for`), or None when there is
    no price, or the table has no entry for this size and quality."""
    price: Any = per_image
    if isinstance(price, dict):
        q = (quality or "").strip().lower()
        keys = [f"{q} {size}" if q and size else None, q or None, size, "*"]
        price = next((price[k] for k in keys if k and k in price), None)
    if isinstance(price, bool) or not isinstance(price, (int, float)):
        return None
    return float(price) * images, USER_SOURCE


def remove_price(store: "Store", model: str, /, provider: str = "") -> bool:
    """Forget a model's price (for that provider, "" = any provider); True if there was one."""
    provider = _provider_key(provider)
    with store.transaction():
        rows = store.find("ModelPrice", provider=provider, modelId=model)
        for row in rows:
            store.delete("ModelPrice", row["id"])
    return bool(rows)


def prices(store: "Store", /) -> "pd.DataFrame":
    """The price table: provider ("" = any), model, inputPerMillion, outputPerMillion, perImage
    (a number or a JSON table, empty when priced by tokens only), currency."""
    sql = (
        f'SELECT "provider", "modelId" AS "model", "inputPerMillion", "outputPerMillion", '
        f'coalesce("perImage", \'\') AS "perImage", "currency", {ms("updatedAt")} FROM "ModelPrice" ORDER BY "modelId", "provider"'
    )
    return load(store, sql, (), {"inputPerMillion": "float", "outputPerMillion": "float", "updatedAt": "time"})


def price_for(store: "Store", provider: str | None, model: str, /) -> tuple[float, float] | None:
    """(input, output) price per million tokens: the provider's own row, else the provider-less
    row, else None (the model is unpriced)."""
    rows = store.query(
        'SELECT "inputPerMillion", "outputPerMillion" FROM "ModelPrice" WHERE "modelId" = ? AND "provider" IN (?, \'\') '
        'ORDER BY ("provider" = \'\'), rowid DESC LIMIT 1',
        [model, _provider_key(provider)],
    )
    if not rows:
        return None
    return float(rows[0]["inputPerMillion"]), float(rows[0]["outputPerMillion"])


def turn_cost(
    store: "Store", provider: str | None, model: str, prompt_tokens: float | None, completion_tokens: float | None, /,
    **where: Any,
) -> float | None:
    """The cost of one turn (see `turn_price`), or None when the model has no price (unpriced,
    which is not the same as free)."""
    priced = turn_price(store, provider, model, prompt_tokens, completion_tokens, **where)
    return None if priced is None else priced[0]


def turn_price(
    store: "Store", provider: str | None, model: str, prompt_tokens: float | None, completion_tokens: float | None, /,
    *, cached_tokens: float | None = None, base_url: str | None = None, package: bool = True,
) -> tuple[float, str] | None:
    """(cost in USD, price source) of one call, or None when unpriced. The user's table wins (all
    input tokens at its input price); else, when `package`, genai-prices for OpenAI's own API
    (`base_url` None or api.openai.com): a model served elsewhere under the same name (a local
    server, a proxy) is not assumed to cost what OpenAI charges."""
    price = price_for(store, provider, model)
    if price is not None:
        return ((prompt_tokens or 0) * price[0] + (completion_tokens or 0) * price[1]) / 1_000_000, USER_SOURCE
    if not package:
        return None
    return package_price(provider, model, prompt_tokens, completion_tokens, cached_tokens=cached_tokens, base_url=base_url)


def package_price(
    provider: str | None, model: str, prompt_tokens: float | None, completion_tokens: float | None, /,
    *, cached_tokens: float | None = None, base_url: str | None = None,
) -> tuple[float, str] | None:
    """(cost, "genai-prices <version>") from the genai-prices package's bundled data, or None when
    the package is missing or does not know the model at that provider."""
    if _provider_key(provider) != "OPENAI" or (base_url and not base_url.rstrip("/").startswith(_OPENAI_URL)):
        return None
    try:
        import genai_prices
    except ImportError:
        return None
    fields = {"input_tokens": int(prompt_tokens or 0), "output_tokens": int(completion_tokens or 0)}
    if cached_tokens:
        fields["cache_read_tokens"] = int(cached_tokens)
    try:
        calc = genai_prices.calc_price(genai_prices.Usage(**fields), model, provider_id="openai")
    except (LookupError, ValueError):
        return None
    return float(calc.total_price), f"genai-prices {genai_prices.__version__}"
