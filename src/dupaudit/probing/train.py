"""Training and evaluation: standard, FGSM with random start, PGD; clean and PGD-robust accuracy.

Imports torch: load lazily. On CUDA: data on the GPU as uint8, augmentation there, bf16 autocast, channels_last.
On the CPU the same code runs in float32 and is deterministic for a given seed (random numbers for data order and
augmentation come from a CPU generator seeded with the run's seed).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..engine.progress import NullProgress, ProgressSink
from ..errors import InputError, ParameterError
from .config import HYPERPARAMETERS, total_steps_for  # noqa: F401 - total_steps_for: re-exported
from .net import ProbeNet


def resolve_device(name: str) -> torch.device:
    """auto: CUDA when present, else CPU; cuda when asked for but absent is a usage error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ParameterError("{device='cuda'}: no CUDA device is available (use {device='cpu'} or 'auto')")
    return torch.device(name)


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return f"cpu: {torch.get_num_threads()} threads"


@dataclass(frozen=True, slots=True)
class AttackSpec:
    """How a batch is perturbed within an L-infinity ball of radius eps."""

    kind: str  # "pgd" or "fgsm"
    eps: float
    steps: int
    step_size: float

    @staticmethod
    def for_training(kind: str, eps: float, pgd_steps: int) -> AttackSpec:
        hp = HYPERPARAMETERS["adversarial"]
        if kind == "fgsm":
            return AttackSpec("fgsm", eps, 1, hp["fgsm_alpha"] * eps)
        return AttackSpec("pgd", eps, pgd_steps, hp["pgd_step_factor"] * eps / pgd_steps)

    @staticmethod
    def for_evaluation(eps: float) -> AttackSpec:
        hp = HYPERPARAMETERS["adversarial"]
        steps = hp["eval_pgd_steps"]
        return AttackSpec("pgd", eps, steps, hp["pgd_step_factor"] * eps / steps)


def attack(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, spec: AttackSpec, generator: torch.Generator, autocast: bool
) -> torch.Tensor:
    """Perturbed inputs that raise the loss: random start in the ball, then `steps` signed-gradient steps."""
    delta = (torch.rand(x.shape, generator=generator, device=x.device) * 2 - 1) * spec.eps
    for _ in range(spec.steps):
        delta.requires_grad_(True)
        with torch.enable_grad(), _autocast(x.device, autocast):
            loss = F.cross_entropy(model((x + delta).clamp(0, 1)).float(), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, delta)
        delta = (delta.detach() + spec.step_size * grad.sign()).clamp(-spec.eps, spec.eps)
    return (x + delta).clamp(0, 1).detach()


def _autocast(device: torch.device, enabled: bool):
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled and device.type == "cuda")


def augment(batch: torch.Tensor, shifts: torch.Tensor, flips: torch.Tensor, pad: int) -> torch.Tensor:
    """uint8 images -> float in [0, 1], translated by `shifts` (reflect padding) and mirrored where `flips`."""
    x = batch.float().div_(255)
    if pad:
        size = x.shape[-1]
        x = F.pad(x, (pad,) * 4, mode="reflect")
        span = torch.arange(size, device=x.device)
        rows = (shifts[:, 0] + pad)[:, None] + span
        cols = (shifts[:, 1] + pad)[:, None] + span
        batch_index = torch.arange(len(x), device=x.device)[:, None, None, None]
        channel_index = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
        x = x[batch_index, channel_index, rows[:, None, :, None], cols[:, None, None, :]]
    return torch.where(flips.view(-1, 1, 1, 1), x.flip(-1), x)


class Lookahead:
    """airbench's EMA of the weights, copied back into the network at every update."""

    def __init__(self, model: nn.Module) -> None:
        self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module, decay: float) -> None:
        for average, current in zip(self.state.values(), model.state_dict().values()):
            if current.dtype.is_floating_point:
                average.lerp_(current, 1 - decay)
                current.copy_(average)


def triangle(total_steps: int, start: float, peak: float, end: float) -> np.ndarray:
    """Learning-rate factor per step: linear from `start` up to 1 at `peak` of the steps, then down to `end`."""
    peak_step = max(1, int(peak * total_steps))
    steps = np.arange(total_steps + 1, dtype=np.float64)
    return np.where(
        steps < peak_step,
        start + (1 - start) * steps / peak_step,
        1 + (end - 1) * (steps - peak_step) / max(1, total_steps - peak_step),
    )


@dataclass(frozen=True, slots=True)
class TrainOutcome:
    model: nn.Module
    seconds: float
    steps: int
    images_seen: int


def train_model(
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    num_classes: int,
    mean: torch.Tensor,
    std: torch.Tensor,
    seed: int,
    total_steps: int,
    batch_size: int,
    width: int,
    adversarial: AttackSpec | None = None,
    progress: ProgressSink | None = None,
    label: str = "train",
) -> TrainOutcome:
    """Train a fresh ProbeNet on uint8 `images` (on their device) for `total_steps` optimizer steps."""
    progress = progress or NullProgress()
    device = images.device
    cuda = device.type == "cuda"
    hp, aug = HYPERPARAMETERS["opt"], HYPERPARAMETERS["aug"]
    count = len(images)
    if count < 2:
        raise InputError("a training arm needs at least two images")
    batch_size = min(batch_size, count)
    steps_per_epoch = count // batch_size  # full batches only (a batch of one would break BatchNorm)

    if cuda:
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick the fastest kernels once
    started = time.perf_counter()
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)  # data order and augmentation: CPU, so CPU and GPU agree
    attack_generator = torch.Generator(device=device).manual_seed(seed + 1)
    model = ProbeNet(num_classes, mean, std, width).to(device)
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    whiten_sample = torch.randperm(count, generator=generator)[: HYPERPARAMETERS["net"]["whiten_images"]]
    model.init_whitening(images[whiten_sample.to(device)].float() / 255)

    # Decoupled hyperparameters (airbench): the loss is summed, so the step scale is per example.
    kilostep_scale = 1024 * (1 + 1 / (1 - hp["momentum"]))
    lr = hp["lr"] / kilostep_scale
    wd = hp["weight_decay"] * batch_size / kilostep_scale
    lr_biases = lr * hp["bias_scaler"]
    norm_biases = [p for k, p in model.named_parameters() if "norm" in k and p.requires_grad]
    others = [p for k, p in model.named_parameters() if "norm" not in k and p.requires_grad]
    optimizer = torch.optim.SGD(
        [
            dict(params=norm_biases, lr=lr_biases, weight_decay=wd / lr_biases),
            dict(params=others, lr=lr, weight_decay=wd / lr),
        ],
        momentum=hp["momentum"],
        nesterov=True,
    )
    start, peak, end = hp["lr_schedule"]
    schedule = triangle(total_steps, start, peak, end)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: float(schedule[min(i, total_steps)]))
    loss_fn = nn.CrossEntropyLoss(label_smoothing=hp["label_smoothing"], reduction="none")

    pad = aug["translate"]
    flip_base = torch.rand(count, generator=generator) < 0.5 if aug["flip"] else torch.zeros(count, dtype=torch.bool)
    lookahead: Lookahead | None = None
    base_rho = hp["ema_decay_base"] ** hp["ema_every_steps"]
    progress.start(label, total_steps)
    step = epoch = 0
    model.train()
    while step < total_steps:
        model.whiten.bias.requires_grad = epoch < hp["whiten_bias_epochs"]
        # One epoch's random numbers, drawn on the CPU and moved once (a copy per step would stall the GPU).
        order = torch.randperm(count, generator=generator).to(device)
        shifts = torch.randint(-pad, pad + 1, (count, 2), generator=generator).to(device)
        flips = (flip_base ^ bool(epoch % 2) if aug["flip"] else flip_base).to(device)
        for first in range(0, steps_per_epoch * batch_size, batch_size):
            if step >= total_steps:
                break
            index = order[first : first + batch_size]
            x = augment(images[index], shifts[index], flips[index], pad)
            if cuda:
                x = x.contiguous(memory_format=torch.channels_last)
            y = labels[index]
            if adversarial is not None:
                x = attack(model, x, y, adversarial, attack_generator, cuda)
            with _autocast(device, cuda):
                outputs = model(x)
            loss = loss_fn(outputs.float(), y).sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            step += 1
            if epoch >= hp["ema_start_epochs"] and step % hp["ema_every_steps"] == 0:
                if lookahead is None:
                    lookahead = Lookahead(model)
                else:
                    lookahead.update(model, decay=base_rho * (step / total_steps) ** hp["ema_decay_pow"])
            progress.advance(1)
        if lookahead is not None:
            lookahead.update(model, decay=1.0)
        epoch += 1
    if cuda:
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - started
    progress.finish()
    images_seen = total_steps * batch_size
    return TrainOutcome(model.eval(), seconds, total_steps, images_seen)


@torch.no_grad()
def _logits(model: nn.Module, x: torch.Tensor, tta_level: int, cuda: bool) -> torch.Tensor:
    def mirror(inputs: torch.Tensor) -> torch.Tensor:
        return 0.5 * model(inputs).float() + 0.5 * model(inputs.flip(-1)).float()

    with _autocast(x.device, cuda):
        if tta_level == 0:
            return model(x).float()
        if tta_level == 1:
            return mirror(x)
        size = x.shape[-1]
        padded = F.pad(x, (1,) * 4, mode="reflect")
        translated = (mirror(padded[:, :, 0:size, 0:size]) + mirror(padded[:, :, 2 : size + 2, 2 : size + 2])) / 2
        return 0.5 * mirror(x) + 0.5 * translated


def evaluate(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    tta_level: int,
    robust: AttackSpec | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Per test image: clean prediction correct (bool), and, with `robust`, correct under the PGD attack too.

    Robust correctness follows the usual convention (as AutoAttack): an image counts as robust only when it is
    classified correctly both clean and after the attack, so robust accuracy never exceeds clean accuracy.
    """
    model.eval()
    cuda = images.device.type == "cuda"
    batch = HYPERPARAMETERS["data"]["eval_batch_size" if cuda else "eval_batch_size_cpu"]
    generator = torch.Generator(device=images.device).manual_seed(seed + 2)
    clean, robust_correct = [], []
    for first in range(0, len(images), batch):
        x = images[first : first + batch].float() / 255
        if cuda:
            x = x.contiguous(memory_format=torch.channels_last)
        y = labels[first : first + batch]
        right = _logits(model, x, tta_level, cuda).argmax(1) == y
        clean.append(right.cpu())
        if robust is not None:
            # The attack and the robust check use the plain network (tta_level 0 for adversarial runs).
            x_adv = attack(model, x, y, robust, generator, cuda)
            robust_correct.append((right & (_logits(model, x_adv, 0, cuda).argmax(1) == y)).cpu())
    clean_array = torch.cat(clean).numpy()
    return clean_array, (torch.cat(robust_correct).numpy() if robust is not None else None)
