"""Built-in backbones: C3D, MSCADC, I3D, per-frame timm models and torchvision video models."""
