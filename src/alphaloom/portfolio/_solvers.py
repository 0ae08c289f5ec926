"""Numerical kernels behind the optimisers (private).

- :func:`box_qp`: ``min 1/2 x'Px + q'x  s.t.  Ax = b, lo <= x <= hi`` with a few equality rows. First the
  primal-dual active-set method (Hintermueller, Ito and Kunisch 2003; a semismooth Newton method): each
  iteration is one Cholesky solve on the free variables and on dense covariance problems it settles in a
  handful of iterations, where an interior-point solver needs 10-30 KKT factorisations of the full system.
  It is only guaranteed to converge for M-matrices: on a dense covariance with upper bounds (Black-Litterman
  posteriors that pile into a few assets) it can cycle, and at a vertex optimum (one asset at 100 %) the
  equality multiplier is not unique and rounding (a free weight at -5e-17) used to start a cycle. Both are
  handled: primal feasibility has a rounding tolerance, the multiplier at a vertex is taken inside its
  admissible interval, and a genuine cycle hands over to a primal active-set method (objective monotone, so
  it cannot cycle) started at the feasible point nearest the best PDAS iterate. None (the caller then uses
  the conic solver) only when the free block is not positive definite or the problem is infeasible.
- :func:`risk_budget_newton`: equal-risk-contribution / risk-budgeting weights by Newton's method on the
  strictly convex problem ``min 1/2 y'Sy - b' log(y)`` (Spinu 2013), whose solution scaled to the budget has
  risk contributions proportional to ``b``.
- :func:`solve_conic`: the general case (groups, leverage, turnover, tracking error, factor limits,
  efficient-risk) through cvxpy with the Clarabel interior-point solver.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.linalg import LinAlgError, cho_factor, cho_solve

from alphaloom.core.exceptions import ConfigError, ModelError


def box_qp(
    P: np.ndarray,
    q: np.ndarray,
    A: np.ndarray,
    b: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    *,
    max_iter: int = 200,
    info: dict | None = None,
) -> np.ndarray | None:
    """Minimise ``1/2 x'Px + q'x`` subject to ``Ax = b`` and ``lo <= x <= hi`` (``P`` positive definite).

    Primal-dual active set first; if it cycles, a primal active-set method warm-started next to its best
    iterate finishes (see the module docstring). Returns None only when neither can solve the problem
    (``P`` not positive definite on the free block, an infeasible or degenerate problem), and the caller
    then uses the conic solver. ``info``, when given, receives ``method`` (``"pdas"`` or ``"primal"``) and
    the iteration counts.
    """
    n = q.shape[0]
    info = {} if info is None else info
    lower = np.zeros(n, dtype=bool)
    upper = np.zeros(n, dtype=bool)
    seen: set[bytes] = set()
    gtol = 1e-12 * max(float(np.abs(np.diag(P)).max()), 1e-300)
    best: tuple[int, np.ndarray] | None = None
    for it in range(max_iter):
        solved = _solve_partition(P, q, A, b, lo, hi, lower, upper)
        if solved is None:
            break
        x, grad = solved  # grad: zero on free variables, the bound multipliers elsewhere
        free = ~(lower | upper)
        xtol = 1e-12 * max(1.0, float(np.abs(x[free]).max(initial=0.0)))
        below, above = free & (x < lo - xtol), free & (x > hi + xtol)
        wrong_l, wrong_u = lower & (grad < -gtol), upper & (grad > gtol)
        n_bad = int(below.sum() + above.sum() + wrong_l.sum() + wrong_u.sum())
        if n_bad == 0:
            info.update(method="pdas", pdas_iterations=it + 1)
            return np.clip(x, lo, hi)
        if best is None or n_bad <= best[0]:
            best = (n_bad, x)
        new_lower = below | (lower & ~wrong_l)
        new_upper = (above | (upper & ~wrong_u)) & ~new_lower
        key = np.packbits(new_lower).tobytes() + np.packbits(new_upper).tobytes()
        if key in seen:
            break
        seen.add(key)
        lower, upper = new_lower, new_upper
    info["pdas_iterations"] = len(seen) + 1
    # PDAS converges for M-matrices; on a dense covariance with upper bounds it can cycle. A primal
    # active-set method decreases the objective at every step, so it cannot cycle (bar degenerate ties,
    # which max_iter bounds); start it at the feasible point nearest the best PDAS iterate.
    anchor = best[1] if best is not None else np.clip(np.zeros(n), lo, hi)
    x0 = _feasible_start(anchor, A, b, lo, hi)
    if x0 is None:
        return None
    out = _primal_active_set(P, q, A, b, lo, hi, x0, max_iter=4 * n + 50, info=info)
    if out is not None:
        info["method"] = "primal"
    return out


def _solve_partition(
    P: np.ndarray,
    q: np.ndarray,
    A: np.ndarray,
    b: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
) -> tuple[np.ndarray, np.ndarray] | None:
    """Minimiser with ``lower``/``upper`` at their bounds and ``Ax = b``, and its gradient ``Px + q + A'nu``.

    None when the free block is not positive definite or the equality cannot hold with these variables
    free (a singular Schur complement).
    """
    free = ~(lower | upper)
    x = np.where(lower, lo, np.where(upper, hi, 0.0))
    f_idx = np.flatnonzero(free)
    bound = ~free
    if f_idx.size == 0:
        if np.abs(A @ x - b).max() > 1e-10 * max(1.0, float(np.abs(b).max())):
            return None
        g = P @ x + q
        return x, g + A.T @ _bound_multiplier(g, A, lower, upper)
    try:
        factor = cho_factor(P[np.ix_(f_idx, f_idx)], lower=False, check_finite=False)
    except LinAlgError:
        return None
    rhs = -q[f_idx] - P[f_idx][:, bound] @ x[bound]
    sol = cho_solve(factor, np.column_stack([rhs, A[:, f_idx].T]), check_finite=False)
    x0, z = sol[:, 0], sol[:, 1:]
    schur = A[:, f_idx] @ z
    resid = A[:, f_idx] @ x0 - (b - A[:, bound] @ x[bound])
    try:
        nu = np.linalg.solve(schur, resid)
    except np.linalg.LinAlgError:
        return None
    x[f_idx] = x0 - z @ nu
    return x, P @ x + q + A.T @ nu


def _bound_multiplier(g: np.ndarray, A: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Equality multiplier ``nu`` where the free variables do not determine it (at a vertex).

    Any ``nu`` with ``g + A'nu >= 0`` on ``lower`` and ``<= 0`` on ``upper`` proves optimality. For one
    equality row those ``nu`` form an interval; take its midpoint (the point of least violation when it is
    empty). A least-squares guess (the mean) would declare an optimal vertex non-optimal and start a cycle.
    """
    if A.shape[0] != 1:
        return np.linalg.lstsq(A.T, -g, rcond=None)[0]
    a = A[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        cut = -g / a
    floor = (lower & (a > 0)) | (upper & (a < 0))  # nu >= cut
    ceil = (lower & (a < 0)) | (upper & (a > 0))  # nu <= cut
    lo_nu = float(cut[floor].max()) if floor.any() else -np.inf
    hi_nu = float(cut[ceil].min()) if ceil.any() else np.inf
    if np.isfinite(lo_nu) and np.isfinite(hi_nu):
        return np.array([0.5 * (lo_nu + hi_nu)])
    if np.isfinite(lo_nu) or np.isfinite(hi_nu):
        return np.array([lo_nu if np.isfinite(lo_nu) else hi_nu])
    return np.zeros(1)


def _feasible_start(
    anchor: np.ndarray, A: np.ndarray, b: np.ndarray, lo: np.ndarray, hi: np.ndarray
) -> np.ndarray | None:
    """The point of ``{Ax = b, lo <= x <= hi}`` nearest ``anchor`` in L1 (a small LP); None if empty."""
    from scipy.optimize import linprog

    z = np.clip(anchor, lo, hi)
    r = b - A @ z
    if np.abs(r).max() <= 1e-13 * max(1.0, float(np.abs(b).max())):
        return z
    n = z.shape[0]
    # x = z + u - v, 0 <= u <= hi - z, 0 <= v <= z - lo, A(u - v) = r, min sum(u + v)
    res = linprog(
        np.ones(2 * n),
        A_eq=np.hstack([A, -A]),
        b_eq=r,
        bounds=np.column_stack([np.zeros(2 * n), np.concatenate([hi - z, z - lo])]),
        method="highs",
    )
    if res.status != 0:
        return None
    return np.clip(z + res.x[:n] - res.x[n:], lo, hi)


def _primal_active_set(
    P: np.ndarray,
    q: np.ndarray,
    A: np.ndarray,
    b: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    x: np.ndarray,
    *,
    max_iter: int,
    info: dict,
) -> np.ndarray | None:
    """Primal active-set method (Nocedal and Wright, Algorithm 16.3) from the feasible point ``x``.

    The working set holds the variables at a bound. Each iteration either takes the equality-constrained
    Newton step on the free variables (stopping at the first bound it meets, which joins the working set)
    or, at the working set's minimiser, frees the variable whose multiplier has the wrong sign. The
    objective never increases. At the end the final working set is solved once more exactly
    (:func:`_solve_partition`) so that ``Ax = b`` holds to rounding.
    """
    lower = x <= lo
    upper = (x >= hi) & ~lower
    gtol = 1e-12 * max(float(np.abs(np.diag(P)).max()), 1e-300)
    for it in range(max_iter):
        free = ~(lower | upper)
        f_idx = np.flatnonzero(free)
        g = P @ x + q
        xscale = max(1.0, float(np.abs(x).max()))
        step = np.zeros(0)
        nu = None
        if f_idx.size:
            try:
                factor = cho_factor(P[np.ix_(f_idx, f_idx)], lower=False, check_finite=False)
            except LinAlgError:
                return None
            a_f = A[:, f_idx]
            sol = cho_solve(factor, np.column_stack([-g[f_idx], a_f.T]), check_finite=False)
            p0, z = sol[:, 0], sol[:, 1:]
            nu = np.linalg.lstsq(a_f @ z, a_f @ p0, rcond=None)[0]
            step = p0 - z @ nu
        if step.size == 0 or np.abs(step).max() <= 1e-13 * xscale:
            if nu is None or np.linalg.matrix_rank(A[:, f_idx]) < A.shape[0]:
                nu = _bound_multiplier(g, A, lower, upper)  # not unique: pick the least violating
            r = g + A.T @ nu
            viol = np.where(lower, -r, np.where(upper, r, 0.0))
            worst = int(np.argmax(viol))
            if viol[worst] <= gtol * xscale:
                info["primal_iterations"] = it + 1
                solved = _solve_partition(P, q, A, b, lo, hi, lower, upper)
                if solved is None:
                    return x
                polished = solved[0]
                if (polished[free] < lo[free] - 1e-9 * xscale).any() or (
                    polished[free] > hi[free] + 1e-9 * xscale
                ).any():
                    return x
                return np.clip(polished, lo, hi)
            lower[worst] = upper[worst] = False
            continue
        # ratio test: the longest step <= 1 that keeps every free variable inside its bounds
        xf = x[f_idx]
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(
                step < 0, (lo[f_idx] - xf) / step, np.where(step > 0, (hi[f_idx] - xf) / step, np.inf)
            )
        ratio = np.maximum(ratio, 0.0)
        k = int(np.argmin(ratio))
        alpha = min(1.0, float(ratio[k]))
        x[f_idx] = np.clip(xf + alpha * step, lo[f_idx], hi[f_idx])
        if alpha < 1.0:
            j = f_idx[k]
            if step[k] < 0:
                x[j], lower[j] = lo[j], True
            else:
                x[j], upper[j] = hi[j], True
    return None


def risk_budget_newton(
    cov: np.ndarray, budgets: np.ndarray, *, tol: float = 1e-12, max_iter: int = 100
) -> np.ndarray:
    """Positive ``y`` minimising ``1/2 y'Sy - b'log y``; ``y / sum(y)`` has risk contributions ``b``."""
    b = budgets / budgets.sum()
    y = b / np.sqrt(np.diag(cov))
    y /= np.sqrt(y @ cov @ y)
    for _ in range(max_iter):
        sy = cov @ y
        grad = sy - b / y
        # relative risk-contribution error: y_i (Sy)_i - b_i, in units of the budget
        err = np.abs(y * grad).max()
        if err < tol:
            return y
        hess = cov + np.diag(b / (y * y))
        try:
            step = cho_solve(cho_factor(hess, check_finite=False), grad, check_finite=False)
        except LinAlgError as exc:
            raise ModelError(
                "risk parity: the covariance is not positive definite; use a shrinkage estimator "
                "(covariance='ledoit_wolf')."
            ) from exc
        f0 = 0.5 * y @ sy - b @ np.log(y)
        t = 1.0
        # damped Newton: stay in y > 0 and decrease the objective (Armijo)
        while True:
            y_new = y - t * step
            if (y_new > 0).all():
                f_new = 0.5 * y_new @ cov @ y_new - b @ np.log(y_new)
                if f_new <= f0 - 1e-4 * t * (grad @ step):
                    break
            t *= 0.5
            if t < 1e-12:
                # no further decrease representable in float64: accept a solution that is already tight
                if err < 1e-8:
                    return y
                raise ModelError("risk parity: Newton line search failed; check the covariance for NaN.")
        y = y_new
    raise ModelError(
        f"risk parity: Newton's method did not reach a risk-contribution error below {tol:g} in {max_iter} "
        "iterations; the covariance may be near singular (use covariance='ledoit_wolf')."
    )


@dataclass
class ConicProblem:
    """A mean-variance problem in the most general form the optimisers build.

    ``objective`` is ``"min_variance"``, ``"max_utility"`` (``mu'w - risk_aversion/2 w'Sw``),
    ``"efficient_return"`` (min variance with ``mu'w >= target_return``), ``"efficient_risk"`` (max ``mu'w``
    with ``w'Sw <= target_risk**2``) or ``"max_sharpe"`` (solved homogeneously: every constraint scaled by
    ``kappa = sum(y) / budget``).
    """

    objective: str
    mu: np.ndarray
    cov: np.ndarray
    budget: float
    lo: np.ndarray
    hi: np.ndarray
    risk_aversion: float = 1.0
    target_return: float | None = None
    target_risk: float | None = None
    risk_free_rate: float = 0.0
    group_mat: np.ndarray | None = None
    group_lo: np.ndarray | None = None
    group_hi: np.ndarray | None = None
    max_leverage: float | None = None
    previous: np.ndarray | None = None
    max_turnover: float | None = None
    benchmark: np.ndarray | None = None
    max_tracking_error: float | None = None
    ineq_mat: np.ndarray | None = None  # extra linear limits lo_k <= (M w)_k <= hi_k (factor exposures)
    ineq_lo: np.ndarray | None = None
    ineq_hi: np.ndarray | None = None
    extra: dict = field(default_factory=dict)


def _sqrt_psd(cov: np.ndarray) -> np.ndarray:
    try:
        return np.linalg.cholesky(cov).T
    except np.linalg.LinAlgError:
        vals, vecs = np.linalg.eigh(cov)
        return (vecs * np.sqrt(np.clip(vals, 0.0, None))).T


def solve_conic(p: ConicProblem) -> np.ndarray:
    """Solve ``p`` with cvxpy + Clarabel; raise ConfigError when infeasible, ModelError when it fails."""
    import cvxpy as cp

    n = p.mu.shape[0]
    # Scale so the covariance has unit mean variance: daily variances are ~1e-4, below the solver's
    # absolute tolerances, which would cost digits of the optimum. The argmin is unchanged.
    s = n / max(float(np.trace(p.cov)), 1e-300)
    cov = 0.5 * (p.cov + p.cov.T) * s
    mu = p.mu * s
    homogeneous = p.objective == "max_sharpe"
    w = cp.Variable(n)
    k = cp.Variable(nonneg=True) if homogeneous else 1.0
    cons = [cp.sum(w) == p.budget * k, w >= p.lo * k, w <= p.hi * k]
    if p.group_mat is not None and len(p.group_mat):
        cons += [p.group_mat @ w >= p.group_lo * k, p.group_mat @ w <= p.group_hi * k]
    if p.ineq_mat is not None and len(p.ineq_mat):
        cons += [p.ineq_mat @ w >= p.ineq_lo * k, p.ineq_mat @ w <= p.ineq_hi * k]
    if p.max_leverage is not None:
        cons.append(cp.norm1(w) <= p.max_leverage * k)
    if p.max_turnover is not None and p.previous is not None:
        cons.append(cp.norm1(w - p.previous * k) <= p.max_turnover * k)
    root = _sqrt_psd(cov) if p.max_tracking_error is not None or p.objective == "efficient_risk" else None
    if p.max_tracking_error is not None and p.benchmark is not None:
        cons.append(cp.norm(root @ (w - p.benchmark * k), 2) <= p.max_tracking_error * np.sqrt(s) * k)
    # the quadratic form goes to Clarabel as the objective's P (half the interior-point time of the
    # epigraph ||R w||^2, which adds N variables and a dense N x N constraint block)
    risk = cp.quad_form(w, cp.psd_wrap(cov))
    if p.objective == "min_variance":
        obj = cp.Minimize(risk)
    elif p.objective == "max_utility":
        obj = cp.Maximize(mu @ w - 0.5 * p.risk_aversion * risk)
    elif p.objective == "efficient_return":
        cons.append(mu @ w >= p.target_return * s)
        obj = cp.Minimize(risk)
    elif p.objective == "efficient_risk":
        cons.append(cp.norm(root @ w, 2) <= p.target_risk * np.sqrt(s))
        obj = cp.Maximize(mu @ w)
    elif p.objective == "max_sharpe":
        excess = p.mu - p.risk_free_rate
        if (excess <= 0).all():
            raise ConfigError(
                "max_sharpe: no asset has an expected return above the risk-free rate "
                f"({p.risk_free_rate:.3g} per period), so no portfolio has a positive Sharpe ratio; use "
                "objective='min_variance' or lower risk_free_rate."
            )
        cons.append((excess / np.abs(excess).max()) @ w == 1.0)
        obj = cp.Minimize(risk)
    else:  # pragma: no cover - guarded by the config's Literal
        raise ConfigError(f"unknown objective {p.objective!r}")
    problem = cp.Problem(obj, cons)
    try:
        problem.solve(solver=cp.CLARABEL)
    except cp.error.SolverError as exc:
        raise ModelError(f"the conic solver (Clarabel) failed: {exc}") from exc
    status = problem.status
    if status in (cp.INFEASIBLE, cp.INFEASIBLE_INACCURATE):
        raise ConfigError(
            "infeasible constraints: no weights satisfy the budget, bounds, group limits, leverage, "
            "turnover, "
            "tracking-error and exposure limits together; relax the tightest limit (the one most recently "
            "added is a good first suspect)."
        )
    if status in (cp.UNBOUNDED, cp.UNBOUNDED_INACCURATE):
        raise ConfigError("the problem is unbounded; add weight bounds or a leverage limit.")
    if status not in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE) or w.value is None:
        raise ModelError(f"the conic solver (Clarabel) ended with status {status!r}; no weights.")
    out = np.asarray(w.value, dtype=np.float64)
    if homogeneous:
        kappa = float(k.value)
        if not kappa > 0:
            raise ModelError("max_sharpe: the solver returned a zero scale; no weights.")
        out = out / kappa
    return out
