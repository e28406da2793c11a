"""Model factories for :class:`~empirics.problems.ModuleProblem` (plain ``torch.nn``, no
torchvision needed), named in specs as ``model = "empirics.problems.models:small_cnn"``.

* :func:`two_layer_cnn` — one 3×3 convolution and one linear layer (8×8 digits);
* :func:`small_cnn` — two 3×3 convolutions with max-pooling and a linear layer (digits; the
  ``cooperative_cnn`` reproduction's model), optionally with BatchNorm;
* :func:`vgg16` — VGG-16 for 32×32 images (CIFAR-10; the Cooperative SGD paper's model, JMLR
  Appendix A), with BatchNorm by default;
* :func:`resnet18` — the CIFAR ResNet-18 (3×3 stem, BasicBlocks [2, 2, 2, 2]).

Every factory takes keyword arguments only and builds its layers with torch's default
initialisation; :class:`ModuleProblem` calls it under a seeded RNG, so x₀ is a function of the
problem's seed.
"""

from __future__ import annotations

from torch import nn

__all__ = ["resnet18", "small_cnn", "two_layer_cnn", "vgg16"]


def two_layer_cnn(channels: int = 8, n_classes: int = 10, in_channels: int = 1,
                  image: int = 8) -> nn.Module:
    """conv 3×3 (``in_channels`` → ``channels``, padding 1) → ReLU → max-pool 2 → linear to
    ``n_classes``: two layers with weights (d = 9·C_in·C + C + C·(image/2)²·n_classes +
    n_classes; 1,370 for the defaults)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, channels, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(channels * (image // 2) ** 2, n_classes))


def small_cnn(width: int = 8, n_classes: int = 10, in_channels: int = 1, image: int = 8,
              batch_norm: bool = False) -> nn.Module:
    """Two conv blocks (3×3 conv → [BatchNorm] → ReLU → max-pool 2; ``width`` then 2·``width``
    channels) and a linear layer (d = 1,898 for the defaults on 8×8 digits)."""
    def block(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, padding=1),
                *([nn.BatchNorm2d(cout)] if batch_norm else []), nn.ReLU(), nn.MaxPool2d(2)]

    return nn.Sequential(*block(in_channels, width), *block(width, 2 * width), nn.Flatten(),
                         nn.Linear(2 * width * (image // 4) ** 2, n_classes))


_VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512,
          "M")


def vgg16(n_classes: int = 10, in_channels: int = 3, batch_norm: bool = True,
          width: float = 1.0) -> nn.Module:
    """VGG-16 for 32×32 inputs (13 conv 3×3 layers with [BatchNorm,] ReLU and 5 max-pools, then
    a linear classifier on the 512 features; ≈ 14.7 M parameters). ``width`` scales every
    channel count (0.25 gives a 0.9 M-parameter model of the same shape)."""
    layers: list[nn.Module] = []
    cin = in_channels
    for v in _VGG16:
        if v == "M":
            layers.append(nn.MaxPool2d(2))
            continue
        cout = max(1, round(int(v) * width))
        layers += [nn.Conv2d(cin, cout, 3, padding=1),
                   *([nn.BatchNorm2d(cout)] if batch_norm else []), nn.ReLU()]
        cin = cout
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(cin, n_classes))


class _Basic(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.b1 = nn.BatchNorm2d(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.b2 = nn.BatchNorm2d(cout)
        self.short = nn.Sequential()
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                       nn.BatchNorm2d(cout))

    def forward(self, x):  # type: ignore[no-untyped-def]
        out = nn.functional.relu(self.b1(self.c1(x)))
        return nn.functional.relu(self.b2(self.c2(out)) + self.short(x))


class _ResNet(nn.Module):
    def __init__(self, n_classes: int, in_channels: int, width: int):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(width), nn.ReLU())
        blocks: list[nn.Module] = []
        cin = width
        for i, cout in enumerate((width, 2 * width, 4 * width, 8 * width)):
            blocks += [_Basic(cin, cout, 1 if i == 0 else 2), _Basic(cout, cout, 1)]
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(cin, n_classes)

    def forward(self, x):  # type: ignore[no-untyped-def]
        h = self.blocks(self.stem(x))
        return self.head(h.mean((-2, -1)))


def resnet18(n_classes: int = 10, in_channels: int = 3, width: int = 64) -> nn.Module:
    """The CIFAR ResNet-18 (He et al. 2016; 3×3 stem without max-pool, BasicBlocks [2, 2, 2, 2]
    of ``width``·(1, 2, 4, 8) channels, global average pooling; ≈ 11.2 M parameters at
    width 64)."""
    return _ResNet(n_classes, in_channels, width)
