"""Cost models: golden numbers of the legacy model, properties of every model (hypothesis), presets,
validation, and the numba kernels agreeing with the Python methods.

Tolerances: the legacy-equivalence tests demand bit-for-bit equality; monotonicity allows a relative 1e-12
(float rounding of sums of different magnitudes); formula checks use ``rel=1e-12`` unless stated.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit

from alphaloom.backtest.costs import (
    ASSET_CLASS_PRESETS,
    N_KERNEL_PARAMS,
    CostModel,
    carry_cost_nb,
    clip_units_nb,
    commission_nb,
    fill_price_nb,
    impact_fraction_nb,
    max_units_nb,
    total_cost_nb,
)
from alphaloom.core.exceptions import ConfigError
from alphaloom.data.connectors.matching import FeeModel

NAN = float("nan")
PROPS = settings(max_examples=200, deadline=None)


# --- strategies ---------------------------------------------------------------------------------------------


def _finite(lo: float, hi: float) -> st.SearchStrategy[float]:
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False)


@st.composite
def cost_models(draw: st.DrawFn) -> CostModel:
    """Any valid model, every cost switched on or off at random."""

    def maybe(strategy: st.SearchStrategy[float]) -> float:
        return draw(st.one_of(st.just(0.0), strategy))

    commission_bps = maybe(_finite(0.0, 100.0))
    return CostModel(
        commission_bps=commission_bps,
        slippage_bps=maybe(_finite(0.0, 50.0)),
        min_commission=maybe(_finite(0.0, 10.0)),
        commission_per_share=maybe(_finite(0.0, 0.05)),
        max_commission_bps=maybe(_finite(commission_bps, 1000.0).filter(lambda x: x > 0.0)),
        spread_bps=maybe(_finite(0.0, 100.0)),
        impact_coef=maybe(_finite(0.0, 2.0)),
        max_participation=maybe(_finite(0.0, 1.0)),
        borrow_bps_per_year=maybe(_finite(0.0, 5000.0)),
        financing_long_bps_per_year=maybe(_finite(0.0, 1000.0)),
        financing_short_bps_per_year=maybe(_finite(0.0, 1000.0)),
    )


legacy_models = st.builds(
    CostModel,
    commission_bps=_finite(0.0, 1000.0),
    slippage_bps=_finite(0.0, 1000.0),
    min_commission=_finite(0.0, 100.0),
)
sizes = _finite(0.0, 1e7)
signed_sizes = _finite(-1e7, 1e7)
prices = _finite(0.01, 1e5)
volatilities = st.one_of(st.just(NAN), _finite(0.0, 0.2))
volumes = st.one_of(st.just(NAN), _finite(1.0, 1e9))
quote_half_spreads = st.one_of(st.just(NAN), _finite(0.0, 100.0))


@st.composite
def markets(draw: st.DrawFn) -> dict[str, float]:
    return {
        "volatility": draw(volatilities),
        "volume": draw(volumes),
        "half_spread_bps": draw(quote_half_spreads),
    }


# --- the legacy model is unchanged --------------------------------------------------------------------------


def test_golden_numbers_of_the_legacy_model() -> None:
    slip = CostModel(commission_bps=0.0, slippage_bps=2.0)
    assert slip.fill_price(10.0, 100.0) == pytest.approx(100.02, rel=1e-15)
    assert slip.fill_price(-10.0, 100.0) == pytest.approx(99.98, rel=1e-15)
    assert slip.total_cost(10.0, 100.0) == pytest.approx(0.2, rel=1e-12)
    one_bp = CostModel(commission_bps=1.0, slippage_bps=0.0)
    assert one_bp.commission(100.0, 50.0) == pytest.approx(0.5, rel=1e-15)  # 1 bp of $5,000
    with_min = CostModel(commission_bps=1.0, slippage_bps=2.0, min_commission=1.0)
    assert with_min.commission(10.0, 100.02) == 1.0  # 1 bp of $1,000.20 is $0.10, below the minimum
    assert with_min.commission(100_000.0, 100.0) == pytest.approx(1000.0, rel=1e-12)  # 1 bp of $10m
    assert with_min.total_cost(10.0, 100.0) == pytest.approx(0.2 + 1.0, rel=1e-12)
    assert CostModel().fill_price(1.0, 50.0) == 50.0 * (1.0 + 2.0 * 1e-4)  # the default: 1 bp + 2 bps


@PROPS
@given(costs=legacy_models, units=signed_sizes, ref=prices)
def test_legacy_configs_price_bit_for_bit_as_before(costs: CostModel, units: float, ref: float) -> None:
    # The formulas of the previous CostModel, written out as they were.
    if units == 0.0:
        old_px, old_fee = ref, 0.0
    else:
        direction = 1.0 if units > 0 else -1.0
        old_px = ref * (1.0 + direction * costs.slippage_bps * 1e-4)
        old_fee = max(abs(units) * old_px * costs.commission_bps * 1e-4, costs.min_commission)
    assert costs.fill_price(units, ref) == old_px
    assert costs.commission(units, old_px) == old_fee
    assert costs.total_cost(units, ref) == abs(units) * abs(old_px - ref) + old_fee


def test_cost_model_is_a_fee_model_for_the_matching_engine() -> None:
    assert isinstance(CostModel(), FeeModel)


# --- properties of every model ------------------------------------------------------------------------------


@PROPS
@given(costs=cost_models(), units=signed_sizes, ref=prices, market=markets())
def test_costs_are_never_negative(
    costs: CostModel, units: float, ref: float, market: dict[str, float]
) -> None:
    px = costs.fill_price(units, ref, **market)
    assert costs.commission(units, px) >= 0.0
    assert costs.total_cost(units, ref, **market) >= 0.0


@PROPS
@given(costs=cost_models(), units=signed_sizes, ref=prices, market=markets())
def test_fill_price_is_never_better_than_the_reference(
    costs: CostModel, units: float, ref: float, market: dict[str, float]
) -> None:
    px = costs.fill_price(units, ref, **market)
    if units > 0:
        assert px >= ref
    elif units < 0:
        assert 0.0 <= px <= ref
    else:
        assert px == ref


@PROPS
@given(costs=cost_models(), a=sizes, b=sizes, ref=prices, market=markets(), sell=st.booleans())
def test_cost_is_monotone_in_trade_size(
    costs: CostModel, a: float, b: float, ref: float, market: dict[str, float], sell: bool
) -> None:
    small, big = sorted((a, b))
    sign = -1.0 if sell else 1.0
    c_small = costs.total_cost(sign * small, ref, **market)
    c_big = costs.total_cost(sign * big, ref, **market)
    assert c_small <= c_big * (1.0 + 1e-12) + 1e-12
    # Commission alone, at one fill price, is monotone too.
    assert costs.commission(small, ref) <= costs.commission(big, ref) * (1.0 + 1e-12) + 1e-12


@PROPS
@given(costs=cost_models(), units=sizes, ref=prices, market=markets())
def test_buys_and_sells_are_charged_symmetrically(
    costs: CostModel, units: float, ref: float, market: dict[str, float]
) -> None:
    # The price moves by the same amount either way; a commission at a given price ignores the side.
    # (Total costs differ slightly: a sell's notional is smaller, so its bps commission is too.)
    up = costs.fill_price(units, ref, **market) - ref
    down = ref - costs.fill_price(-units, ref, **market)
    assert up == pytest.approx(down, rel=1e-9, abs=1e-9 * ref)
    assert costs.commission(units, ref) == costs.commission(-units, ref)


@PROPS
@given(costs=cost_models(), ref=prices, market=markets())
def test_zero_units_cost_nothing_and_fill_at_the_reference(
    costs: CostModel, ref: float, market: dict[str, float]
) -> None:
    assert costs.fill_price(0.0, ref, **market) == ref
    assert costs.commission(0.0, ref) == 0.0
    assert costs.total_cost(0.0, ref, **market) == 0.0


# --- commission ---------------------------------------------------------------------------------------------


@PROPS
@given(costs=cost_models(), units=_finite(1e-6, 1e7), px=prices)
def test_minimum_and_cap_are_honoured(costs: CostModel, units: float, px: float) -> None:
    fee = costs.commission(units, px)
    notional = units * px
    raw = notional * costs.commission_bps * 1e-4 + units * costs.commission_per_share
    if costs.max_commission_bps > 0:
        cap = notional * costs.max_commission_bps * 1e-4
        assert fee <= cap * (1.0 + 1e-12)
        assert fee == pytest.approx(min(max(raw, costs.min_commission), cap), rel=1e-12)
    else:
        assert fee >= costs.min_commission
        assert fee == pytest.approx(max(raw, costs.min_commission), rel=1e-12)


def test_per_share_commission_minimum_and_cap() -> None:
    ib = CostModel(commission_bps=0.0, slippage_bps=0.0, commission_per_share=0.005, min_commission=1.0)
    assert ib.commission(100.0, 50.0) == 1.0  # $0.50 per-share fee, raised to the $1 minimum
    assert ib.commission(1_000.0, 50.0) == pytest.approx(5.0, rel=1e-12)  # $0.005 x 1,000
    capped = ib.replace(max_commission_bps=100.0)  # at most 1 % of trade value
    assert capped.commission(10.0, 1.0) == pytest.approx(0.1, rel=1e-12)  # 1 % of $10 beats the $1 minimum
    assert capped.commission(10_000.0, 0.1) == pytest.approx(10.0, rel=1e-12)  # 1 % of $1,000, not $50


# --- spread and impact --------------------------------------------------------------------------------------


def test_configured_spread_charges_half_per_side_and_quotes_take_precedence() -> None:
    costs = CostModel(commission_bps=0.0, slippage_bps=0.0, spread_bps=4.0)
    assert costs.fill_price(1.0, 100.0) == pytest.approx(100.02, rel=1e-15)  # half of 4 bps
    assert costs.fill_price(-1.0, 100.0) == pytest.approx(99.98, rel=1e-15)
    assert costs.fill_price(1.0, 100.0, half_spread_bps=1.0) == pytest.approx(100.01, rel=1e-15)
    assert costs.fill_price(1.0, 100.0, half_spread_bps=-3.0) == 100.0  # a crossed quote costs nothing
    assert costs.fill_price(1.0, 100.0, half_spread_bps=math.inf) == pytest.approx(100.02, rel=1e-15)
    # A round trip pays one full spread.
    assert costs.total_cost(1.0, 100.0) + costs.total_cost(-1.0, 100.0) == pytest.approx(0.04, rel=1e-12)


IMPACT = CostModel(commission_bps=0.0, slippage_bps=0.0, impact_coef=0.5)


def _impact(costs: CostModel, units: float, volatility: float, volume: float) -> float:
    return costs.fill_price(units, 1.0, volatility=volatility, volume=volume) - 1.0


def test_square_root_impact_formula() -> None:
    # 0.5 * 2 % daily vol * sqrt(1 % of volume) = 10 bps.
    assert _impact(IMPACT, 10_000.0, 0.02, 1_000_000.0) == pytest.approx(10e-4, rel=1e-12)
    assert IMPACT.total_cost(10_000.0, 100.0, volatility=0.02, volume=1e6) == pytest.approx(1_000.0, rel=1e-9)


@PROPS
@given(units=_finite(1.0, 1e5), vol=_finite(1e-4, 0.1), volume=_finite(1e6, 1e9))
def test_impact_has_the_square_root_shape(units: float, vol: float, volume: float) -> None:
    base = _impact(IMPACT, units, vol, volume)
    assert _impact(IMPACT, 2 * units, vol, volume) == pytest.approx(math.sqrt(2) * base, rel=1e-9)
    assert _impact(IMPACT, units, vol, volume / 2) == pytest.approx(math.sqrt(2) * base, rel=1e-9)
    assert _impact(IMPACT, units, 2 * vol, volume) == pytest.approx(2 * base, rel=1e-9)


@PROPS
@given(units=_finite(1.0, 1e5), v1=_finite(0.0, 0.1), v2=_finite(0.0, 0.1), p1=_finite(0.0, 1.0))
def test_impact_grows_with_volatility_and_participation(
    units: float, v1: float, v2: float, p1: float
) -> None:
    lo, hi = sorted((v1, v2))
    volume = units / max(p1, 1e-6)
    assert _impact(IMPACT, units, lo, volume) <= _impact(IMPACT, units, hi, volume)
    assert _impact(IMPACT, units, hi, volume * 2) <= _impact(IMPACT, units, hi, volume)


def test_unknown_volatility_or_volume_gives_no_impact() -> None:
    for vol, volume in [(NAN, 1e6), (0.02, NAN), (0.0, 1e6), (0.02, 0.0), (-0.1, 1e6)]:
        assert _impact(IMPACT, 1_000.0, vol, volume) == 0.0


def test_an_absurd_sell_never_fills_below_zero() -> None:
    wild = CostModel(commission_bps=0.0, slippage_bps=0.0, impact_coef=10.0)
    assert wild.fill_price(-1e9, 100.0, volatility=0.5, volume=1.0) == 0.0
    assert wild.fill_price(1e9, 100.0, volatility=0.5, volume=1.0) == 200.0


# --- participation cap --------------------------------------------------------------------------------------


def test_participation_cap() -> None:
    capped = CostModel(max_participation=0.1)
    assert capped.max_units(1_000.0) == pytest.approx(100.0, rel=1e-15)
    assert capped.clip_units(250.0, 1_000.0) == pytest.approx(100.0, rel=1e-15)
    assert capped.clip_units(-250.0, 1_000.0) == pytest.approx(-100.0, rel=1e-15)
    assert capped.clip_units(-50.0, 1_000.0) == -50.0
    assert capped.max_units(NAN) == math.inf  # unknown volume: no cap, as in the matching engine
    assert capped.max_units(0.0) == 0.0  # nothing traded, nothing to trade against
    assert CostModel().max_units(1_000.0) == math.inf  # 0 = no cap
    assert CostModel().clip_units(1e12, 1.0) == 1e12


@PROPS
@given(costs=cost_models(), units=signed_sizes, volume=volumes)
def test_clipped_units_respect_the_cap_and_keep_their_sign(
    costs: CostModel, units: float, volume: float
) -> None:
    clipped = costs.clip_units(units, volume)
    assert abs(clipped) <= costs.max_units(volume)
    assert abs(clipped) <= abs(units)
    assert clipped * units >= 0.0


# --- carry --------------------------------------------------------------------------------------------------


def test_borrow_is_charged_on_shorts_only() -> None:
    borrow = CostModel(borrow_bps_per_year=200.0)
    assert borrow.carry_cost(10_000.0, 365.0) == 0.0
    assert borrow.carry_cost(-10_000.0, 365.0) == pytest.approx(200.0, rel=1e-12)  # 2 % of $10,000 a year
    assert borrow.carry_cost(-10_000.0, 1.0) == pytest.approx(200.0 / 365.0, rel=1e-12)
    assert borrow.carry_cost(0.0, 30.0) == 0.0
    assert borrow.carry_cost(-10_000.0, 0.0) == 0.0


def test_financing_uses_the_long_or_short_rate() -> None:
    fx = CostModel(financing_long_bps_per_year=100.0, financing_short_bps_per_year=300.0, days_per_year=360.0)
    assert fx.carry_cost(1e6, 1.0) == pytest.approx(1e6 * 0.01 / 360.0, rel=1e-12)
    assert fx.carry_cost(-1e6, 1.0) == pytest.approx(1e6 * 0.03 / 360.0, rel=1e-12)
    both = fx.replace(borrow_bps_per_year=50.0)
    assert both.carry_cost(-1e6, 360.0) == pytest.approx(1e6 * 0.035, rel=1e-12)  # borrow adds to a short
    earns = CostModel(financing_long_bps_per_year=-250.0)  # long the higher-yielding currency
    assert earns.carry_cost(1e6, 365.0) == pytest.approx(-25_000.0, rel=1e-12)


@PROPS
@given(costs=cost_models(), value=_finite(-1e8, 1e8), d1=_finite(0.0, 3650.0), d2=_finite(0.0, 3650.0))
def test_carry_is_non_negative_and_grows_with_time(
    costs: CostModel, value: float, d1: float, d2: float
) -> None:
    short, long = sorted((d1, d2))
    assert 0.0 <= costs.carry_cost(value, short) <= costs.carry_cost(value, long) * (1.0 + 1e-12)


@pytest.mark.parametrize("days", [-1.0, NAN, math.inf])
def test_carry_rejects_bad_holding_periods(days: float) -> None:
    with pytest.raises(ValueError, match="days must be a finite number"):
        CostModel(borrow_bps_per_year=100.0).carry_cost(-1.0, days)


# --- presets and validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize("asset_class", sorted(ASSET_CLASS_PRESETS))
def test_asset_class_presets_are_valid_and_charge_something(asset_class: str) -> None:
    costs = CostModel.for_asset_class(asset_class)
    assert CostModel.from_dict(costs.model_dump()) == costs
    for name, value in ASSET_CLASS_PRESETS[asset_class].items():
        assert getattr(costs, name) == value
    assert costs.total_cost(100.0, 100.0) > 0.0
    assert costs.total_cost(-100.0, 100.0) > 0.0
    assert costs.fill_price(100.0, 100.0) > 100.0


def test_asset_class_presets_in_detail() -> None:
    equity = CostModel.for_asset_class("equity")
    assert equity.commission(100.0, 50.0) == 1.0  # $0.50 of per-share fees, $1 minimum
    assert equity.carry_cost(-10_000.0, 365.0) == pytest.approx(50.0, rel=1e-12)
    assert equity.carry_cost(10_000.0, 365.0) == 0.0
    forex = CostModel.for_asset_class("forex")
    assert forex.carry_cost(1e5, 365.0) > 0.0
    assert forex.carry_cost(-1e5, 365.0) > 0.0
    assert CostModel.for_asset_class("futures").carry_cost(-1e6, 365.0) == 0.0
    assert CostModel.for_asset_class("crypto", commission_bps=25.0).commission_bps == 25.0


def test_unknown_asset_class_suggests_the_closest() -> None:
    with pytest.raises(ConfigError, match=r"Did you mean 'equity'\?.*crypto, equity, forex, futures"):
        CostModel.for_asset_class("equities")
    with pytest.raises(ConfigError, match="borrow_bps_per_year"):
        CostModel.for_asset_class("equity", borrow_bps_per_year=-1.0)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"commission_bps": -1.0}, "commission_bps"),
        ({"slippage_bps": -0.5}, "slippage_bps"),
        ({"min_commission": -1.0}, "min_commission"),
        ({"min_commission": math.inf}, "min_commission"),
        ({"commission_per_share": -0.01}, "commission_per_share"),
        ({"spread_bps": -2.0}, "spread_bps"),
        ({"impact_coef": -0.1}, "impact_coef"),
        ({"max_participation": 1.5}, "max_participation"),
        ({"borrow_bps_per_year": -10.0}, "borrow_bps_per_year"),
        ({"financing_long_bps_per_year": NAN}, "financing_long_bps_per_year"),
        ({"days_per_year": 252.0}, "days_per_year"),
        ({"commission_bps": 10.0, "max_commission_bps": 5.0}, "caps the commission below its own rate"),
        ({"slipage_bps": 1.0}, "Did you mean 'slippage_bps'"),
    ],
)
def test_bad_configs_are_rejected_with_a_clear_error(changes: dict[str, float], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        CostModel.from_dict(changes)
    # Direct construction fails too, with pydantic's ValidationError naming the field.
    with pytest.raises(ValueError, match=next(iter(changes))):
        CostModel(**changes)


def test_a_cap_at_or_above_the_rate_is_accepted() -> None:
    assert CostModel(commission_bps=10.0, max_commission_bps=10.0).max_commission_bps == 10.0
    assert CostModel(commission_bps=10.0, max_commission_bps=0.0).max_commission_bps == 0.0


# --- the kernels --------------------------------------------------------------------------------------------


def test_kernel_params_layout() -> None:
    costs = CostModel(
        commission_bps=1.0,
        slippage_bps=2.0,
        min_commission=3.0,
        commission_per_share=4.0,
        max_commission_bps=5.0,
        spread_bps=6.0,
        impact_coef=7.0,
        max_participation=0.8,
        borrow_bps_per_year=9.0,
        financing_long_bps_per_year=10.0,
        financing_short_bps_per_year=11.0,
        days_per_year=360.0,
    )
    params = costs.kernel_params()
    assert params.dtype == np.float64
    assert params.shape == (N_KERNEL_PARAMS,)
    np.testing.assert_array_equal(params, [1, 2, 3, 4, 5, 6, 7, 0.8, 9, 10, 11, 360])
    params[0] = 99.0  # a fresh copy: mutating it cannot change the model
    assert costs.kernel_params()[0] == 1.0


@njit(cache=False)
def _loop_costs(
    params: np.ndarray,
    units: np.ndarray,
    ref: np.ndarray,
    vol: np.ndarray,
    volume: np.ndarray,
    half_spread: np.ndarray,
    position_values: np.ndarray,
) -> np.ndarray:
    n = units.shape[0]
    out = np.empty((n, 7))
    for i in range(n):
        u = clip_units_nb(params, units[i], volume[i])
        px = fill_price_nb(params, u, ref[i], vol[i], volume[i], half_spread[i])
        out[i, 0] = u
        out[i, 1] = px
        out[i, 2] = commission_nb(params, u, px)
        out[i, 3] = total_cost_nb(params, u, ref[i], vol[i], volume[i], half_spread[i])
        out[i, 4] = carry_cost_nb(params, position_values[i], 1.0)
        out[i, 5] = max_units_nb(params, volume[i])
        out[i, 6] = impact_fraction_nb(params, u, vol[i], volume[i])
    return out


def test_kernels_in_a_numba_loop_match_the_python_methods_exactly() -> None:
    rng = np.random.default_rng(7)
    n = 500
    units = rng.normal(0.0, 5_000.0, n)
    units[::50] = 0.0
    ref = rng.uniform(1.0, 500.0, n)
    vol = np.where(rng.random(n) < 0.1, NAN, rng.uniform(0.0, 0.05, n))
    volume = np.where(rng.random(n) < 0.1, NAN, rng.uniform(1e3, 1e7, n))
    half_spread = np.where(rng.random(n) < 0.5, NAN, rng.uniform(0.0, 10.0, n))
    values = rng.normal(0.0, 1e5, n)
    for asset_class in sorted(ASSET_CLASS_PRESETS):
        costs = CostModel.for_asset_class(asset_class)
        out = _loop_costs(costs.kernel_params(), units, ref, vol, volume, half_spread, values)
        for i in range(n):
            market = {"volatility": vol[i], "volume": volume[i], "half_spread_bps": half_spread[i]}
            u = costs.clip_units(units[i], volume[i])
            px = costs.fill_price(u, ref[i], **market)
            assert out[i, 0] == u
            assert out[i, 1] == px
            assert out[i, 2] == costs.commission(u, px)
            assert out[i, 3] == costs.total_cost(u, ref[i], **market)
            assert out[i, 4] == costs.carry_cost(values[i], 1.0)
            assert out[i, 5] == costs.max_units(volume[i])
            assert out[i, 3] == pytest.approx(abs(u) * abs(px - ref[i]) + out[i, 2], rel=1e-15)
