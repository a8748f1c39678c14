"""Inception-v3 as in TensorFlow's `inception-2015-12-05` graph, read at `pool_3` (2,048 floats).

YouTube-8M's extractor feeds raw uint8 RGB frames into that graph. This is the PyTorch port whose
weights pytorch-fid publishes (`pt_inception-2015-12-05-6726825d.pth`); the module names and
parameter shapes follow torchvision's `Inception3` (without the auxiliary head) so that file loads
with `strict=True` unchanged. Where the 2015 graph differs from torchvision's Inception3, this port
follows the graph:
- average pools inside the blocks exclude the zero padding from the mean (TF's `SAME` pooling);
- the last block (`Mixed_7c`) uses a max pool in its pool branch;
- the classifier has 1,008 outputs (it is loaded but never used for pool_3).

The graph's own preprocessing is part of `forward`: cast to float, bilinear resize to 299x299 with
TF1's legacy coordinate mapping (no half-pixel offset), then `(x - 128) / 128`.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

INPUT_SIZE = 299
POOL3_DIM = 2048
NUM_CLASSES = 1008
WEIGHT_FILE = "pt_inception-2015-12-05-6726825d.pth"


# ---- TF1 legacy bilinear resize -------------------------------------------------------------------


def _tf1_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per output index along one axis: lower and upper source index and the weight of the upper.

    TF1 maps output index `o` to source coordinate `o * (in/out)` (no half-pixel offset), in float32
    arithmetic; the neighbours are `floor` and `min(ceil, in-1)`, the weight is the fractional part.
    """
    scale = np.float32(in_size) / np.float32(out_size)
    src = np.arange(out_size, dtype=np.float32) * scale
    lower = np.floor(src)
    lerp = src - lower
    lower_idx = np.clip(lower.astype(np.int64), 0, in_size - 1)
    upper_idx = np.minimum(np.ceil(src).astype(np.int64), in_size - 1)
    return lower_idx, upper_idx, lerp


def tf1_resize_matrix(in_size: int, out_size: int) -> np.ndarray:
    """The [out_size, in_size] matrix of TF1's `ResizeBilinear` (align_corners=False) along one axis:
    row `o` holds `1 - lerp` at the lower and `lerp` at the upper neighbour of `o * (in/out)`."""
    lower, upper, lerp = _tf1_taps(in_size, out_size)
    matrix = np.zeros((out_size, in_size), dtype=np.float64)
    rows = np.arange(out_size)
    np.add.at(matrix, (rows, lower), 1.0 - lerp.astype(np.float64))
    np.add.at(matrix, (rows, upper), lerp.astype(np.float64))
    return matrix


@functools.lru_cache(maxsize=32)
def _tf1_taps_tensors(in_size: int, out_size: int) -> tuple[Tensor, Tensor, Tensor]:
    lower, upper, lerp = _tf1_taps(in_size, out_size)
    return torch.from_numpy(lower), torch.from_numpy(upper), torch.from_numpy(lerp.astype(np.float32))


def tf1_resize_bilinear(images: Tensor, size: int = INPUT_SIZE) -> Tensor:
    """Resize images [B, C, H, W] (uint8 or float) to float32 [B, C, size, size] like TF1's legacy
    ResizeBilinear. Each output pixel reads two rows and two columns (the two non-zeros of each row of
    `tf1_resize_matrix`), so this gathers and blends them: multiplying by the dense matrices instead
    costs more than the network itself on a 1080p frame. Gathering before the cast to float also
    keeps full-size float frames out of memory."""
    height, width = int(images.shape[2]), int(images.shape[3])  # ints: an ONNX export fixes the frame size
    lo_r, hi_r, w_r = (t.to(images.device) for t in _tf1_taps_tensors(height, size))
    lo_c, hi_c, w_c = (t.to(images.device) for t in _tf1_taps_tensors(width, size))
    # Along x first, then y, as TensorFlow's kernel does (top and bottom lerps, then between them):
    # the same taps in the other order round differently in float32.
    left, right = images[..., lo_c].to(torch.float32), images[..., hi_c].to(torch.float32)
    columns = left + (right - left) * w_c  # [B, C, H, size]
    top, bottom = columns[:, :, lo_r], columns[:, :, hi_r]
    return top + (bottom - top) * w_r[:, None]


def preprocess_frames(frames_uint8: Tensor) -> Tensor:
    """The graph's input stage without the network: [B, H, W, 3] uint8 -> [B, 3, 299, 299] float in
    about [-1, 1], on the frames' device (vtag batch runs it in its decode workers)."""
    x = tf1_resize_bilinear(frames_uint8.permute(0, 3, 1, 2), INPUT_SIZE)
    return (x - 128.0) / 128.0


# ---- network --------------------------------------------------------------------------------------


class BasicConv2d(nn.Module):
    """Convolution without bias, batch norm (TF's epsilon 0.001), ReLU."""

    def __init__(self, in_channels: int, out_channels: int, **conv_args) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **conv_args)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg_pool_same(x: Tensor) -> Tensor:
    # TF's SAME average pool divides by the number of real pixels under the window.
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):
    def __init__(self, in_channels: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch5x5_1 = BasicConv2d(in_channels, 48, kernel_size=1)
        self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
        self.branch_pool = BasicConv2d(in_channels, pool_features, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        b1 = self.branch1x1(x)
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(_avg_pool_same(x))
        return torch.cat([b1, b5, b3, bp], 1)


class InceptionB(nn.Module):
    """Grid reduction 35 -> 17."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3 = BasicConv2d(in_channels, 384, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.branch3x3(x)
        b3d = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([b3, b3d, bp], 1)


class InceptionC(nn.Module):
    """Factorised 7x7 block at 17x17."""

    def __init__(self, in_channels: int, channels_7x7: int) -> None:
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch7x7_1 = BasicConv2d(in_channels, c7, kernel_size=1)
        self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(in_channels, c7, kernel_size=1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(in_channels, 192, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        b1 = self.branch1x1(x)
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        b7d = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            b7d = layer(b7d)
        bp = self.branch_pool(_avg_pool_same(x))
        return torch.cat([b1, b7, b7d, bp], 1)


class InceptionD(nn.Module):
    """Grid reduction 17 -> 8."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3_1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_1(x)
        for layer in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            b7 = layer(b7)
        bp = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([b3, b7, bp], 1)


class InceptionE(nn.Module):
    """Expanded filter bank at 8x8. The 2015 graph's last block (`Mixed_7c`) max-pools its pool
    branch; `Mixed_7b` average-pools it like the other blocks."""

    def __init__(self, in_channels: int, max_pool_branch: bool) -> None:
        super().__init__()
        self.max_pool_branch = max_pool_branch
        self.branch1x1 = BasicConv2d(in_channels, 320, kernel_size=1)
        self.branch3x3_1 = BasicConv2d(in_channels, 384, kernel_size=1)
        self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 448, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(in_channels, 192, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        b1 = self.branch1x1(x)
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        b3d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        b3d = torch.cat([self.branch3x3dbl_3a(b3d), self.branch3x3dbl_3b(b3d)], 1)
        if self.max_pool_branch:
            pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        else:
            pooled = _avg_pool_same(x)
        bp = self.branch_pool(pooled)
        return torch.cat([b1, b3, b3d, bp], 1)


class InceptionV3Pool3(nn.Module):
    """uint8 RGB frames [B, H, W, 3] (any size) -> pool_3 features [B, 2048] float32."""

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
        self.Mixed_5b = InceptionA(192, pool_features=32)
        self.Mixed_5c = InceptionA(256, pool_features=64)
        self.Mixed_5d = InceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, channels_7x7=128)
        self.Mixed_6c = InceptionC(768, channels_7x7=160)
        self.Mixed_6d = InceptionC(768, channels_7x7=160)
        self.Mixed_6e = InceptionC(768, channels_7x7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, max_pool_branch=False)
        self.Mixed_7c = InceptionE(2048, max_pool_branch=True)
        # Unused for pool_3, but part of the published state dict.
        self.fc = nn.Linear(POOL3_DIM, NUM_CLASSES)

    def preprocess(self, frames_uint8: Tensor) -> Tensor:
        """The graph's input stage: [B, H, W, 3] uint8 -> [B, 3, 299, 299] float in about [-1, 1]."""
        if frames_uint8.ndim != 4 or frames_uint8.shape[-1] != 3:
            raise ValueError(f"expected frames [B, H, W, 3], got {tuple(frames_uint8.shape)}")
        device = self.Conv2d_1a_3x3.conv.weight.device
        return preprocess_frames(frames_uint8.to(device))

    def pool3(self, x: Tensor) -> Tensor:
        """Network from the preprocessed [B, 3, 299, 299] input to pool_3 [B, 2048]."""
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b,
                      self.Mixed_6c, self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b,
                      self.Mixed_7c):
            x = block(x)
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)

    def forward(self, frames_uint8: Tensor) -> Tensor:
        return self.pool3(self.preprocess(frames_uint8))


def load_inception(random_weights: bool = False, device: str | torch.device = "cpu",
                   seed: int = 0) -> InceptionV3Pool3:
    """The pool_3 network in eval mode: official weights from the cache, or seeded random weights
    (for trying the pipeline without the weight files; the features are then meaningless)."""
    if random_weights:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = InceptionV3Pool3()
            # He initialisation keeps activations at a realistic scale through the 94 ReLU layers
            # (PyTorch's default init shrinks them to ~1e-8 by pool_3).
            for module in model.modules():
                if isinstance(module, nn.Conv2d):
                    nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    else:
        from vtag.weights import weight_path

        path = weight_path(WEIGHT_FILE)
        model = InceptionV3Pool3()
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
    return model.to(device).eval()
