"""Prices per million tokens (the ModelPrice table) and the cost of one turn.

    >>> set_price(store, "gpt-4o-mini", 0.15, 0.60, provider="OPENAI")    # USD per million tokens
    >>> turn_cost(store, "OPENAI", "gpt-4o-mini", 1000, 200)
    0.00027

`turn_price` gives the cost and where its price came from: the user's table ("user") wins; else
the `genai-prices` package's bundled table for models it knows at a provider it knows
("genai-prices <version>"), read offline, with cached input tokens at the table's cache rate.
`turn_cost` returns None for a model without a price, so "unpriced" is never mistaken for $0.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from ..errors import UsageError
from .loader import load, ms

if TYPE_CHECKING:
    import pandas as pd

    from ..store import Store

__all__ = ["package_price", "price_for", "prices", "remove_price", "set_price", "turn_cost", "turn_price"]

USER_SOURCE = "user"
_OPENAI_URL = "https://api.openai.com/v1"

def _provider_key(provider: str | None) -> str:
    return (provider or "").strip().upper()


def set_price(
    store: "Store",
    model: str,
    input_per_million: float,
    output_per_million: float,
    /,
    provider: str = "",
    currency: str = "USD",
) -> dict[str, Any]:
    """Set (or change) the price of a model per million input and output tokens, in USD.

    provider "" prices the model whatever the provider; a provider-specific price wins over it.
    """
    if not model:
        raise UsageError("set_price needs a model id, e.g. set_price(store, 'gpt-4o-mini', 0.15, 0.60).")
    try:
        inp, out = float(input_per_million), float(output_per_million)
    except (TypeError, ValueError):
        inp = out = math.nan
    if not (math.isfinite(inp) and math.isfinite(out)):
        raise UsageError(
            f"Prices are numbers per million tokens, e.g. 0.15 and 0.60 (got {input_per_million!r}, {output_per_million!r})."
        )
    if inp < 0 or out < 0:
        raise UsageError(f"Prices cannot be negative (got {inp}, {out}).")
    if str(currency).strip().upper() != "USD":  # turns record cost_usd: another currency would be mislabelled
        raise UsageError(f"Costs are kept in USD; give the prices in USD, not {currency!r}.")
    provider = _provider_key(provider)
    with store.transaction():
        row = store.first("ModelPrice", provider=provider, modelId=model)
        fields = {"inputPerMillion": inp, "outputPerMillion": out, "currency": currency.upper()}
        if row is None:
            return store.create("ModelPrice", provider=provider, modelId=model, **fields)
        return store.update("ModelPrice", row["id"], **fields)


def remove_price(store: "Store", model: str, /, provider: str = "") -> bool:
    """Forget a model's price (for that provider, "" = any provider); True if there was one."""
    provider = _provider_key(provider)
    with store.transaction():
        rows = store.find("ModelPrice", provider=provider, modelId=model)
        for row in rows:
            store.delete("ModelPrice", row["id"])
    return bool(rows)


def prices(store: "Store", /) -> "pd.DataFrame":
    """The price table: provider ("" = any), model, inputPerMillion, outputPerMillion, currency."""
    sql = (
        f'SELECT "provider", "modelId" AS "model", "inputPerMillion", "outputPerMillion", "currency", '
        f'{ms("updatedAt")} FROM "ModelPrice" ORDER BY "modelId", "provider"'
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
