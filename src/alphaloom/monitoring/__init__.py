"""Monitoring: feature and prediction drift (PSI, KS), live performance decay, alerts, retraining."""

from alphaloom.monitoring.drift import (
    Alert,
    AlertLog,
    DecayReport,
    DriftConfig,
    DriftMonitor,
    DriftReport,
    RetrainConfig,
    RetrainDecision,
    RetrainTrigger,
    performance_decay,
)

__all__ = [
    "Alert",
    "AlertLog",
    "DecayReport",
    "DriftConfig",
    "DriftMonitor",
    "DriftReport",
    "RetrainConfig",
    "RetrainDecision",
    "RetrainTrigger",
    "performance_decay",
]
