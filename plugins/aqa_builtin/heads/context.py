"""The MSCADC head trunk and its context net (multi-scale dilated 3D convolutions)."""

from __future__ import annotations

from torch import Tensor, nn

from aqa_builtin.layers import conv3d


class ContextNet(nn.Module):
    """Multi-scale context aggregation with dilated 3D convolutions (Yu & Koltun, 2016).

    Replication padding of 9 voxels, then 3x3x3 convolutions with dilations 1, 1, 2, 4, 1
    (channels c -> 2c -> 2c -> 4c -> 8c -> 8c, each with BatchNorm and ReLU) and a 1x1x1
    convolution back to c channels. The unpadded convolutions consume exactly the padding,
    so the output has the input's size, each voxel seeing a 19x19x19 context. Module names
    follow the official MTL-AQA heads (``cntxt_convK`` -> ``convK``).

    Args:
        channels: Input and output channels (the head's bottleneck, 12 in the paper).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        c = channels
        self.pad = nn.ReplicationPad3d(9)
        plan = [(c, 2 * c, 1), (2 * c, 2 * c, 1), (2 * c, 4 * c, 2), (4 * c, 8 * c, 4),
                (8 * c, 8 * c, 1)]
        for i, (cin, cout, dilation) in enumerate(plan, start=1):
            setattr(self, f"conv{i}", conv3d(cin, cout, padding=0, dilation=dilation))
            setattr(self, f"bn{i}", nn.BatchNorm3d(cout))
        self.conv6 = conv3d(8 * c, c, kernel=1, padding=0)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, c, T, H, W)`` -> ``(B, c, T, H, W)``."""
        h = self.pad(x)
        for i in range(1, 6):
            h = self.relu(getattr(self, f"bn{i}")(getattr(self, f"conv{i}")(h)))
        return self.conv6(h)


class ConvHeadTrunk(nn.Module):
    """The shared part of every MSCADC head (paper Table 3).

    ``C1(b) -> context net -> BN, ReLU -> MP(2,2,2) -> C3(b), BN, ReLU``. The 1x1x1 reduction
    pads by one voxel as the official code does (so 2x20x20 maps become 4x22x22 and 2x11x11
    after the pool). Each task's own final layer follows.

    Args:
        in_channels: Channels of the backbone's feature maps.
        bottleneck: Channels inside the head (12 in the paper).
    """

    def __init__(self, in_channels: int, bottleneck: int = 12) -> None:
        super().__init__()
        b = bottleneck
        self.reduce = conv3d(in_channels, b, kernel=1, padding=1)
        self.context = ContextNet(b)
        self.bn = nn.BatchNorm3d(b)
        self.pool = nn.MaxPool3d(kernel_size=2, stride=2)
        self.conv = conv3d(b, b)
        self.conv_bn = nn.BatchNorm3d(b)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C, T, H, W)`` feature maps -> ``(B, b, T', H', W')``."""
        h = self.context(self.reduce(x))
        h = self.pool(self.relu(self.bn(h)))
        return self.relu(self.conv_bn(self.conv(h)))
