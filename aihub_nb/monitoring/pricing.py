"""Prices per million tokens (the ModelPrice table) and the cost of one turn.

    >>> set_price(store, "gpt-4o-mini", 0.15, 0.60, provider="OPENAI")    # USD per million tokens
    >>> turn_cost(store, "OPENAI", "gpt-4o-mini", 1000, 200)
    0.00027

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

__all__ = ["price_for", "prices", "remove_price", "set_price", "turn_cost"]

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
    store: "Store", provider: str | None, model: str, prompt_tokens: float | None, completion_tokens: float | None, /
) -> float | None:
    """The cost of one turn from the price table, or None when the model has no price (unpriced,
    which is not the same as free)."""
    price = price_for(store, provider, model)
    if price is None:
        return None
    return ((prompt_tokens or 0) * price[0] + (completion_tokens or 0) * price[1]) / 1_000_000
