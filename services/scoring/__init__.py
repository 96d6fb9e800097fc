"""Scoring: keyword rules over normalised Chinese text, windowed spread, crisis tiers."""

from services.scoring.core import HitStage, ScoringState, TierStage
from services.scoring.matcher import RuleMatcher

__all__ = ["HitStage", "RuleMatcher", "ScoringState", "TierStage"]
