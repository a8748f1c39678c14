"""Layer 2, video file -> per-second features: decoding, Inception-v3, VGGish, PCA and quantization, extraction."""
