"""Hierarchical risk parity (Lopez de Prado 2016).

Three steps on the covariance only (no expected returns, no matrix inversion, so it is stable where
mean-variance is not):

1. cluster the assets on the correlation distance ``d_ij = sqrt((1 - rho_ij) / 2)`` with scipy's
   hierarchical linkage (``single`` by default, as in the paper);
2. order the assets by the dendrogram's leaves (quasi-diagonalisation);
3. recursive bisection: split the ordered list in halves; each half gets weight in inverse proportion to the
   variance of its inverse-variance portfolio, down to single assets.

The bisection splits the *ordered list* in halves as in the paper, which is also what PyPortfolioOpt's
``HRPOpt`` does; the tests check the weights equal PyPortfolioOpt's on real data. Long-only, weights sum to
the budget.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

from alphaloom.portfolio.optimizers import OptimizerConfig, PortfolioOptimizer

__all__ = ["HRPConfig", "HierarchicalRiskParity", "hrp_weights"]


class HRPConfig(OptimizerConfig):
    """Hierarchical risk parity settings.

    Parameters
    ----------
    linkage
        scipy linkage method for the clustering: ``"single"`` (the paper's), ``"average"``, ``"complete"``
        or ``"ward"``.
    """

    linkage: Literal["single", "average", "complete", "ward"] = "single"


def hrp_weights(cov: np.ndarray, linkage: str = "single") -> tuple[np.ndarray, np.ndarray]:
    """HRP weights summing to 1 and the leaf order used.

    Parameters
    ----------
    cov
        Covariance, ``(N, N)``, positive diagonal.
    linkage
        scipy linkage method.

    Returns
    -------
    weights, order
        ``(N,)`` weights in the input order, and the ``(N,)`` quasi-diagonal order of the assets.
    """
    import scipy.cluster.hierarchy as sch
    from scipy.spatial.distance import squareform

    n = cov.shape[0]
    if n == 1:
        return np.ones(1), np.zeros(1, dtype=int)
    sd = np.sqrt(np.diag(cov))
    corr = cov / np.outer(sd, sd)
    dist = np.sqrt(np.clip((1.0 - corr) / 2.0, 0.0, 1.0))
    np.fill_diagonal(dist, 0.0)
    link = sch.linkage(squareform(dist, checks=False), linkage)
    order = np.asarray(sch.to_tree(link, rd=False).pre_order(), dtype=int)
    inv_var = 1.0 / np.diag(cov)
    w = np.ones(n)

    def cluster_var(items: np.ndarray) -> float:
        iv = inv_var[items] / inv_var[items].sum()
        return float(iv @ cov[np.ix_(items, items)] @ iv)

    stack = [order]
    while stack:
        nxt = []
        for items in stack:
            if len(items) < 2:
                continue
            half = len(items) // 2
            left, right = items[:half], items[half:]
            v_left, v_right = cluster_var(left), cluster_var(right)
            alpha = 1.0 - v_left / (v_left + v_right)
            w[left] *= alpha
            w[right] *= 1.0 - alpha
            nxt += [left, right]
        stack = nxt
    return w, order


class HierarchicalRiskParity(PortfolioOptimizer):
    """Hierarchical risk parity on the (shrunk) covariance; long-only, summing to the budget.

    After :meth:`fit`, ``order_`` holds the assets in dendrogram-leaf order.
    """

    config_class = HRPConfig
    config: HRPConfig

    def _solve(self, mu: pd.Series, cov: pd.DataFrame, previous: np.ndarray | None) -> np.ndarray:
        w, order = hrp_weights(cov.to_numpy(), self.config.linkage)
        self.order_ = [str(cov.index[i]) for i in order]
        return self.config.constraints.budget * w
