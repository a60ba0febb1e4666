"""The ``identity`` backbone: pre-extracted clip features pass through unchanged."""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor

from aqa_framework.interfaces import Backbone, InputKind


class IdentityBackbone(Backbone):
    """Passes pre-extracted clip features through: the backbone of feature datasets.

    A dataset whose ``input_kind`` is ``"features"`` (``features``, ``rhythmic-gymnastics``,
    ``synthetic-routines``) yields sequences of clip features ``(L, D)`` computed beforehand
    (``aqa features extract``, or a release's feature files); the model hands each clip's
    ``D`` features to the aggregator and the heads as they are. It has no weights.
    """

    name = "identity"
    input_kind: ClassVar[InputKind] = "features"
    default_input_shape: ClassVar[tuple[int, ...]] = (1024,)

    def forward(self, clips: Tensor) -> Tensor:
        """``(M, D)`` clip features -> the same ``(M, D)`` tensor.

        Raises:
            ValueError: If the input is not one feature vector per clip.
        """
        if clips.dim() != 2:
            raise ValueError(
                f"backbone 'identity' takes one feature vector per clip, (clips, features); "
                f"got {tuple(clips.shape)} (frames need a video backbone such as c3d)"
            )
        return clips
