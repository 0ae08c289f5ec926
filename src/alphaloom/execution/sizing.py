"""From target weights to order quantities: equity and prices in, lot-rounded orders out.

The rules, per symbol (all quantities in units of the instrument, signed: + long, - short):

1. ``target = weight * equity / price``, after scaling all weights down together when their gross
   ``sum(|w|)`` exceeds ``max_gross_weight``.
2. The target is rounded *towards zero* to a multiple of the instrument's ``lot_size``, so rounding never
   takes a position beyond what was asked for.
3. ``held = position + pending`` (pending: the signed remainder of orders still working at the venue), so an
   order already on its way is never sent twice.
4. The change ``target - held`` becomes orders:

   - moving away from zero (buying towards a long target, selling towards a short one): the change rounded
     towards zero to whole lots, so the position never ends beyond the target;
   - moving towards zero: the change rounded *away* from zero to whole lots (the position ends at or
     inside the target), but never past zero; a target of zero closes the position exactly, odd lot
     included;
   - crossing zero (long to short or back): two orders, a close of exactly the held quantity and an
     opening order for the lot-rounded target, so a risk manager that only lets risk-reducing orders
     through in a drawdown can still let the close through.

5. Changes smaller than ``min_trade_weight`` of equity, or orders below the instrument's ``min_quantity`` or
   ``min_notional``, are not sent; each such case is returned as a :class:`SizingSkip` with its reason, never
   dropped silently. A close to exactly zero is exempt from the minimums.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from decimal import Decimal
from types import MappingProxyType
from typing import Literal, NamedTuple

from pydantic import Field, field_validator

from alphaloom.core.config import ComponentConfig
from alphaloom.core.exceptions import ConfigError, DataFormatError
from alphaloom.core.types import AssetClass, Side

__all__ = [
    "DEFAULT_LOTS",
    "LotSpec",
    "OrderIntent",
    "SizingConfig",
    "SizingResult",
    "SizingSkip",
    "round_to_lot",
    "size_orders",
]

# Quantities within this relative distance of a lot multiple count as that multiple (float noise).
_LOT_RTOL = 1e-9


class LotSpec(ComponentConfig):
    """Trading increments of one instrument.

    Parameters
    ----------
    lot_size
        Order quantities are multiples of this many units (1 share, 1000 currency units, 1e-6 BTC).
    min_quantity
        Smallest order in units (0: one lot).
    min_notional
        Smallest order value in the quote currency (price x quantity).
    """

    lot_size: float = Field(gt=0.0, allow_inf_nan=False)
    min_quantity: float = Field(0.0, ge=0.0, allow_inf_nan=False)
    min_notional: float = Field(0.0, ge=0.0, allow_inf_nan=False)


#: Defaults by asset class: whole shares for equities, micro lots (1,000 units) for forex, 1e-6 of a coin.
DEFAULT_LOTS: Mapping[AssetClass, LotSpec] = MappingProxyType(
    {
        AssetClass.STOCK: LotSpec(lot_size=1.0, min_notional=1.0),
        AssetClass.ETF: LotSpec(lot_size=1.0, min_notional=1.0),
        AssetClass.FOREX: LotSpec(lot_size=1000.0),
        AssetClass.CFD: LotSpec(lot_size=1.0),
        AssetClass.CRYPTO: LotSpec(lot_size=1e-6, min_notional=1.0),
        AssetClass.OPTION: LotSpec(lot_size=1.0),
        AssetClass.INDEX: LotSpec(lot_size=1.0),
    }
)


class SizingConfig(ComponentConfig):
    """Settings of :func:`size_orders`.

    Parameters
    ----------
    max_gross_weight
        Cap on ``sum(|w|)`` of the targets; above it all weights are scaled down together.
    min_trade_weight
        No-trade band: a change smaller than this share of equity is not traded (it would only pay costs).
    lots
        Per-symbol :class:`LotSpec` overrides.
    default_lot
        The spec of a symbol with neither an override nor a known asset class.
    """

    max_gross_weight: float = Field(1.0, gt=0.0, le=10.0)
    min_trade_weight: float = Field(1e-3, ge=0.0, lt=1.0)
    lots: dict[str, LotSpec] = Field(default_factory=dict)
    default_lot: LotSpec = LotSpec(lot_size=1e-6)

    @field_validator("lots")
    @classmethod
    def _symbols(cls, v: dict[str, LotSpec]) -> dict[str, LotSpec]:
        for key in v:
            if not key or key != key.strip():
                raise ValueError(f"lot overrides are keyed by symbol, got {key!r}")
        return v

    def lot_for(self, symbol: str, asset_class: AssetClass | None = None) -> LotSpec:
        """The :class:`LotSpec` of ``symbol``: its override, else its asset class's default, else
        ``default_lot``."""
        if symbol in self.lots:
            return self.lots[symbol]
        if asset_class is not None:
            return DEFAULT_LOTS.get(AssetClass(asset_class), self.default_lot)
        return self.default_lot


class OrderIntent(NamedTuple):
    """An order to send, before it has a client order id.

    ``kind`` is ``"close"`` (to exactly flat), ``"reduce"`` (towards zero), ``"open"`` (away from zero);
    ``target`` is the lot-rounded target position in units.
    """

    symbol: str
    side: Side
    quantity: float
    kind: Literal["open", "reduce", "close"]
    target: float


class SizingSkip(NamedTuple):
    """A wanted change that is not traded, and why."""

    symbol: str
    wanted: float
    reason: str


class SizingResult(NamedTuple):
    """Orders to send (per symbol in the order given: a close before an open) and the changes skipped."""

    intents: list[OrderIntent]
    skipped: list[SizingSkip]
    targets: dict[str, float]
    scale: float


def _decimals(step: float) -> int:
    exponent = Decimal(repr(step)).normalize().as_tuple().exponent
    return max(0, -int(exponent)) if isinstance(exponent, int) else 12


def round_to_lot(quantity: float, lot_size: float, mode: Literal["down", "up"] = "down") -> float:
    """``|quantity|`` rounded to a multiple of ``lot_size``: ``"down"`` towards zero, ``"up"`` away from it.

    The sign of ``quantity`` is kept. A quantity within ``1e-9`` (relative) of a multiple counts as that
    multiple, so float noise never costs or adds a lot.
    """
    if not (lot_size > 0 and math.isfinite(lot_size)):
        raise ConfigError(f"lot_size must be finite and > 0, got {lot_size!r}.")
    if not math.isfinite(quantity):
        raise DataFormatError(f"cannot round a non-finite quantity ({quantity!r}) to a lot.")
    lots = abs(quantity) / lot_size
    nearest = round(lots)
    if math.isclose(lots, nearest, rel_tol=_LOT_RTOL, abs_tol=_LOT_RTOL):
        n = nearest
    else:
        n = math.floor(lots) if mode == "down" else math.ceil(lots)
    return math.copysign(round(n * lot_size, _decimals(lot_size) + 2), quantity) if n else 0.0


def size_orders(
    weights: Mapping[str, float],
    *,
    equity: float,
    prices: Mapping[str, float],
    positions: Mapping[str, float],
    pending: Mapping[str, float] | None = None,
    config: SizingConfig | None = None,
    asset_classes: Mapping[str, AssetClass] | None = None,
) -> SizingResult:
    """The orders that move ``positions`` (+ ``pending``) to target ``weights``; see the module docstring.

    Parameters
    ----------
    weights
        Target weight per symbol (share of equity, signed). Symbols held but absent here keep their
        position (pass 0 to close one).
    equity
        Account equity in the quote currency (> 0).
    prices
        Reference price per symbol (the last close), > 0, for every symbol in ``weights``.
    positions
        Current signed position per symbol, in units.
    pending
        Signed unfilled remainder of working orders per symbol, in units.
    config
        Rounding, caps and no-trade band.
    asset_classes
        Asset class per symbol, for the default lot specs.

    Returns
    -------
    SizingResult

    Raises
    ------
    DataFormatError
        Non-finite weights, positions or prices, a missing or non-positive price, or equity <= 0.
    """
    cfg = config if config is not None else SizingConfig()
    pending = pending or {}
    classes = asset_classes or {}
    if not (math.isfinite(equity) and equity > 0):
        raise DataFormatError(
            f"equity must be finite and > 0 to size orders, got {equity!r}; the account has nothing to trade."
        )
    for name, values in (("weights", weights), ("positions", positions), ("pending", pending)):
        bad = {s: v for s, v in values.items() if not math.isfinite(v)}
        if bad:
            raise DataFormatError(f"{name} must be finite, got {bad}.")
    missing = sorted(s for s in weights if not (s in prices and prices[s] > 0 and math.isfinite(prices[s])))
    if missing:
        raise DataFormatError(
            f"no usable price (finite, > 0) for {', '.join(missing)}; pass the last close of every symbol "
            f"with a target weight (got { ({s: prices.get(s) for s in missing}) })."
        )
    gross = math.fsum(abs(w) for w in weights.values())
    scale = min(1.0, cfg.max_gross_weight / gross) if gross > 0 else 1.0
    intents: list[OrderIntent] = []
    skipped: list[SizingSkip] = []
    targets: dict[str, float] = {}
    for symbol, weight in weights.items():
        price = prices[symbol]
        lot = cfg.lot_for(symbol, classes.get(symbol))
        target = round_to_lot(weight * scale * equity / price, lot.lot_size, "down")
        targets[symbol] = target
        held = positions.get(symbol, 0.0) + pending.get(symbol, 0.0)
        change = target - held
        if change == 0.0:
            continue
        if target != 0.0 and abs(change) * price < cfg.min_trade_weight * equity:
            skipped.append(
                SizingSkip(
                    symbol,
                    change,
                    f"change of {abs(change) * price / equity:.4%} of equity is inside the no-trade band "
                    f"min_trade_weight={cfg.min_trade_weight:g}",
                )
            )
            continue
        intents_for, skips_for = _orders_for(symbol, held, target, price, lot)
        intents += intents_for
        skipped += skips_for
    return SizingResult(intents, skipped, targets, scale)


def _orders_for(
    symbol: str, held: float, target: float, price: float, lot: LotSpec
) -> tuple[list[OrderIntent], list[SizingSkip]]:
    intents: list[OrderIntent] = []
    skipped: list[SizingSkip] = []

    def emit(qty: float, kind: Literal["open", "reduce", "close"], side: Side) -> None:
        if qty <= 0:
            skipped.append(
                SizingSkip(
                    symbol,
                    target - held,
                    f"change of {abs(target - held):g} units rounds to no whole lot of {lot.lot_size:g}",
                )
            )
            return
        if kind != "close":
            floor_qty = max(lot.min_quantity, lot.lot_size)
            if qty < floor_qty * (1 - _LOT_RTOL) or qty * price < lot.min_notional:
                skipped.append(
                    SizingSkip(
                        symbol,
                        side.sign * qty,
                        f"{kind} order of {qty:g} ({qty * price:,.2f} notional) is below the instrument's "
                        f"minimum (quantity {floor_qty:g}, notional {lot.min_notional:g})",
                    )
                )
                return
        intents.append(OrderIntent(symbol, side, qty, kind, target))

    crosses = held != 0.0 and target != 0.0 and math.copysign(1, held) != math.copysign(1, target)
    if crosses or target == 0.0:
        # Close exactly what is held, then (when crossing) open the rounded target on the other side.
        emit(abs(held), "close", Side.SELL if held > 0 else Side.BUY)
        if crosses:
            emit(abs(target), "open", Side.BUY if target > 0 else Side.SELL)
        return intents, skipped
    change = target - held
    if abs(target) > abs(held):  # away from zero: round down so the position never passes the target
        emit(abs(round_to_lot(change, lot.lot_size, "down")), "open", Side.BUY if change > 0 else Side.SELL)
    else:  # towards zero: round up so the position ends inside the target, but never past zero
        qty = min(abs(round_to_lot(change, lot.lot_size, "up")), abs(held))
        kind: Literal["reduce", "close"] = "close" if qty == abs(held) else "reduce"
        emit(qty, kind, Side.BUY if change > 0 else Side.SELL)
    return intents, skipped
