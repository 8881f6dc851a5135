"""Pure tensor ops and removable model patches (dilation, scale fusion,
Gaussian blur, FreeU). Submodules import torch; this package file does not."""
