"""Tokenizer losses: L1 + LPIPS + quantizer + PatchGAN adversarial with DiffAugment (App. A)."""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from vcq.io import StepError


def lpips_weights(train_cfg: dict) -> Path | None:
    """The VGG16 trunk file LPIPS reads (None: no LPIPS term); a missing one is one line naming
    the key (the tokenizer step checks it before it computes anything)."""
    if train_cfg["lpips_weights"] is None:
        return None
    path = Path(train_cfg["lpips_weights"])
    if not path.is_file():
        raise StepError(
            f"{path}: LPIPS trunk weights not found (tokenizer.train.lpips_weights); put "
            "torchvision's VGG16 state dict there (vgg16-397923af.pth, keys 'features.N.weight'), "
            "or set it to null to train without LPIPS"
        )
    return path


def load_lpips(weights_path: str | os.PathLike, net: str = "vgg") -> nn.Module:
    """Frozen LPIPS whose VGG16 trunk is read from a local torchvision-style state dict."""
    import lpips

    path = Path(weights_path)
    # pnet_rand avoids torchvision's download; the package ships the linear heads itself
    model = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)
    source = torch.load(path, map_location="cpu", weights_only=True)
    source = {k.removeprefix("features."): v for k, v in source.items()}
    trunk = {}
    for key in model.net.state_dict():
        _, index, param = key.split(".")
        if f"{index}.{param}" not in source:
            raise KeyError(f"{path}: missing VGG16 feature weight 'features.{index}.{param}'")
        trunk[key] = source[f"{index}.{param}"]
    model.net.load_state_dict(trunk)
    return model.eval().requires_grad_(False)


def patch_depth(image_size: int, layers: int = 3) -> int:
    """PatchGAN depth for `image_size` px: `layers`, or fewer where the logit map would be empty
    (3 layers need 24 px; the demo's 16 px gets 2)."""
    for depth in range(layers, 0, -1):
        side = image_size // 2**depth  # the first conv and depth - 1 strided layers halve it
        if side - 2 >= 1:  # the stride-1 layer and the logit conv each take one off
            return depth
    raise ValueError(f"images of {image_size} px are too small for a PatchGAN discriminator")


class PatchDiscriminator(nn.Module):
    """PatchGAN discriminator: strided convs → one logit per receptive-field patch."""

    def __init__(self, image_size: int, channels: int = 64, layers: int = 3) -> None:
        super().__init__()
        layers = patch_depth(image_size, layers)
        mods: list[nn.Module] = [nn.Conv2d(3, channels, 4, 2, 1), nn.LeakyReLU(0.2)]
        width = channels
        for i in range(1, layers + 1):
            out = channels * min(2**i, 8)
            stride = 2 if i < layers else 1
            # GroupNorm, not BatchNorm: no running statistics to sync under DDP
            mods += [nn.Conv2d(width, out, 4, stride, 1), nn.GroupNorm(8, out), nn.LeakyReLU(0.2)]
            width = out
        mods.append(nn.Conv2d(width, 1, 4, 1, 1))
        self.net = nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Patch logits (B, 1, h, w) for images in [-1, 1]."""
        return self.net(x)


def diff_augment(x: torch.Tensor) -> torch.Tensor:
    """DiffAugment-style colour, translation (1/8) and cutout (1/2), differentiable in x."""
    b, _, h, w = x.shape
    dev = x.device
    x = x + (torch.rand(b, 1, 1, 1, device=dev) - 0.5)
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (torch.rand(b, 1, 1, 1, device=dev) * 2) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * (torch.rand(b, 1, 1, 1, device=dev) + 0.5) + mean
    shift = torch.randint(-(h // 8), h // 8 + 1, (b, 2), device=dev)
    ys = (torch.arange(h, device=dev)[None] - shift[:, :1]).clamp(0, h - 1)
    xs = (torch.arange(w, device=dev)[None] - shift[:, 1:]).clamp(0, w - 1)
    x = x[torch.arange(b, device=dev)[:, None, None], :, ys[:, :, None], xs[:, None, :]]
    x = x.permute(0, 3, 1, 2)
    cy = torch.randint(0, h, (b, 1, 1), device=dev)
    cx = torch.randint(0, w, (b, 1, 1), device=dev)
    yy = torch.arange(h, device=dev)[None, :, None]
    xx = torch.arange(w, device=dev)[None, None, :]
    keep = ((yy - cy).abs() >= h // 4) | ((xx - cx).abs() >= w // 4)
    return x * keep[:, None].to(x.dtype)


def discriminator_loss(real: torch.Tensor, fake: torch.Tensor, kind: str) -> torch.Tensor:
    """Hinge or non-saturating discriminator loss from real and fake logits."""
    if kind == "hinge":
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()
    return F.softplus(-real).mean() + F.softplus(fake).mean()


def generator_adv_loss(fake: torch.Tensor, kind: str) -> torch.Tensor:
    """Generator adversarial loss from fake logits."""
    return -fake.mean() if kind == "hinge" else F.softplus(-fake).mean()


class TokenizerLoss(nn.Module):
    """Weighted tokenizer objective; weights and the GAN start step come from `tokenizer.train`,
    the discriminator's depth from the image size."""

    def __init__(self, train_cfg: dict, image_size: int) -> None:
        super().__init__()
        self.cfg = train_cfg
        path = lpips_weights(train_cfg)
        self.lpips = load_lpips(path, train_cfg.get("lpips_net", "vgg")) if path else None
        self.discriminator = PatchDiscriminator(image_size)

    def gan_active(self, step: int) -> bool:
        """Whether adversarial terms are on at this step."""
        return step >= self.cfg["disc_start"]

    def generator(
        self, x: torch.Tensor, recon: torch.Tensor, quant_loss: torch.Tensor, step: int
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Tokenizer loss and its unweighted terms (detached; read them only when logging)."""
        c = self.cfg
        terms = {"l1": F.l1_loss(recon, x), "quant": quant_loss}
        weights = {"l1": c["l1_weight"], "quant": c["commitment_weight"]}
        if self.lpips is not None:
            terms["lpips"] = self.lpips(recon.float(), x.float()).mean()
            weights["lpips"] = c["lpips_weight"]
        if self.gan_active(step):
            self.discriminator.requires_grad_(False)
            terms["gen_adv"] = generator_adv_loss(
                self.discriminator(diff_augment(recon)), c["disc_loss"]
            )
            self.discriminator.requires_grad_(True)
            weights["gen_adv"] = c["gen_adv_weight"]
        total = sum(weights[k] * v for k, v in terms.items())
        return total, {k: v.detach() for k, v in terms.items()}

    def discriminator_step_loss(self, x: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
        """Weighted discriminator loss; real and fake go through the same augmentation family."""
        real = self.discriminator(diff_augment(x))
        fake = self.discriminator(diff_augment(recon.detach()))
        return self.cfg["disc_weight"] * discriminator_loss(real, fake, self.cfg["disc_loss"])
