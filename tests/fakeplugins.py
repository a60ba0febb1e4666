"""Tiny third-party plugins used by the plugin-system tests (torch kept to a minimum)."""

from __future__ import annotations

from types import SimpleNamespace

from pydantic import BaseModel, ConfigDict, Field

from aqa_framework import hookimpl
from aqa_framework.interfaces import Aggregator


class _MeanParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dim: int = Field(1, description="Dimension to average over.")


class SkatingMeanAggregator(Aggregator):
    """Averages clip features (a test plugin)."""

    name = "skating.mean"
    Params = _MeanParams

    def forward(self, clip_features):
        return clip_features.mean(dim=self.params.dim)


class UnprefixedAggregator(SkatingMeanAggregator):
    """Forgets its plugin prefix."""

    name = "mean2"


class LooseParamsAggregator(SkatingMeanAggregator):
    """Params that accept anything."""

    name = "skating.loose"

    class Params(BaseModel):
        x: int = 1


class _Skating:
    @hookimpl
    def register_aggregators(self, register):
        register(SkatingMeanAggregator)


class _Misspelled:
    @hookimpl
    def register_backbone(self, register):  # missing the trailing s
        register(SkatingMeanAggregator)


class _Unprefixed:
    @hookimpl
    def register_aggregators(self, register):
        register(UnprefixedAggregator)


class _Loose:
    @hookimpl
    def register_aggregators(self, register):
        register(LooseParamsAggregator)


class _Raises:
    @hookimpl
    def register_aggregators(self, register):
        raise RuntimeError("hook exploded")


class _Exits:
    @hookimpl
    def register_aggregators(self, register):
        raise SystemExit(2)  # what sys.exit(2) raises


class FakeEntryPoint:
    """Stands in for an importlib.metadata entry point."""

    def __init__(self, name, target, dist="aqa-skating", version="1.2.3"):
        self.name = name
        self.value = f"fake:{name}"
        self._target = target
        self.dist = SimpleNamespace(metadata={"Name": dist}, version=version)

    def load(self):
        if isinstance(self._target, BaseException):
            raise self._target
        return self._target


skating = _Skating()
misspelled = _Misspelled()
unprefixed = _Unprefixed()
loose = _Loose()
raises = _Raises()
exits = _Exits()
