"""Built-in backbones: C3D (pool5), the MSCADC BatchNorm C3D and per-frame timm models."""
