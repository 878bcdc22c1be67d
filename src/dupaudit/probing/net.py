"""The probe's network: airbench94's small, fast conv net (imports torch; load this module lazily)."""

from __future__ import annotations

import torch
from torch import nn

from .config import HYPERPARAMETERS


class BatchNorm(nn.BatchNorm2d):
    """BatchNorm without a learned scale (airbench): only the bias trains."""

    def __init__(self, features: int, momentum: float) -> None:
        super().__init__(features, eps=1e-12, momentum=1 - momentum)
        self.weight.requires_grad = False


class Conv(nn.Conv2d):
    """3x3 'same' conv initialised close to the identity: an implicit residual connection."""

    def __init__(
        self, channels_in: int, channels_out: int, kernel_size: int = 3, padding: str | int = "same", bias: bool = False
    ) -> None:
        super().__init__(channels_in, channels_out, kernel_size=kernel_size, padding=padding, bias=bias)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if self.bias is not None:
            self.bias.data.zero_()
        weight = self.weight.data
        torch.nn.init.dirac_(weight[: weight.size(1)])


class ConvGroup(nn.Module):
    def __init__(self, channels_in: int, channels_out: int, momentum: float) -> None:
        super().__init__()
        self.conv1 = Conv(channels_in, channels_out)
        self.pool = nn.MaxPool2d(2)
        self.norm1 = BatchNorm(channels_out, momentum)
        self.conv2 = Conv(channels_out, channels_out)
        self.norm2 = BatchNorm(channels_out, momentum)
        self.activ = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.activ(self.norm1(self.pool(self.conv1(x))))
        return self.activ(self.norm2(self.conv2(x)))


class ProbeNet(nn.Module):
    """Input: images in [0, 1] (so attacks work in pixel units); the net normalises them itself."""

    def __init__(self, num_classes: int, mean: torch.Tensor, std: torch.Tensor, base_width: int) -> None:
        super().__init__()
        hp = HYPERPARAMETERS["net"]
        kernel = hp["whiten_kernel"]
        widths = (base_width, 4 * base_width, 4 * base_width)
        whiten_width = 2 * 3 * kernel**2
        self.register_buffer("mean", mean.view(1, 3, 1, 1).float())
        self.register_buffer("std", std.view(1, 3, 1, 1).float())
        self.whiten = Conv(3, whiten_width, kernel_size=kernel, padding=0, bias=True)
        self.whiten.weight.requires_grad = False  # set once from the data's patch covariance
        momentum = hp["batchnorm_momentum"]
        self.body = nn.Sequential(
            nn.GELU(),
            ConvGroup(whiten_width, widths[0], momentum),
            ConvGroup(widths[0], widths[1], momentum),
            ConvGroup(widths[1], widths[2], momentum),
            nn.AdaptiveMaxPool2d(1),  # airbench: MaxPool2d(3) on its 3x3 map; adaptive so --size may vary
            nn.Flatten(),
        )
        self.head = nn.Linear(widths[2], num_classes, bias=False)
        self.scale = hp["scaling_factor"]

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(self.whiten(self.normalise(x)))) * self.scale

    @torch.no_grad()
    def init_whitening(self, images: torch.Tensor) -> None:
        """Set the whitening conv to the patch covariance's eigenvectors scaled by 1/sqrt(eigenvalue) (and -)."""
        x = self.normalise(images.float())
        height, width = self.whiten.weight.shape[2:]
        channels = x.shape[1]
        patches = x.unfold(2, height, 1).unfold(3, width, 1).transpose(1, 3).reshape(-1, channels, height, width)
        flat = patches.reshape(len(patches), -1).double()
        covariance = flat.T @ flat / len(flat)
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
        eigenvalues = eigenvalues.flip(0).view(-1, 1, 1, 1)
        eigenvectors = eigenvectors.T.reshape(-1, channels, height, width).flip(0)
        scaled = eigenvectors / torch.sqrt(eigenvalues + HYPERPARAMETERS["net"]["whiten_eps"])
        self.whiten.weight.data[:] = torch.cat((scaled, -scaled)).to(self.whiten.weight.dtype)
