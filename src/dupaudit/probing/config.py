"""Every hyperparameter of the probe in one commented place, and the settings of one probe.

The network and its training recipe follow KellerJordan/cifar10-airbench (airbench94): a whitening
convolution initialised from the training patches, three conv groups with identity-initialised convs,
BatchNorm without scale, GELU, label smoothing, Nesterov SGD with decoupled hyperparameters, a triangular
learning-rate schedule, a Lookahead-style EMA and test-time augmentation. Nothing here imports torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

HYPERPARAMETERS: dict = {
    "opt": {
        "epochs": 10.0,  # airbench94 uses 9.9 epochs of CIFAR-10 for 94%
        "batch_size": 1024,  # the largest batch; smaller datasets get a smaller one (see batch_size_for)
        "min_steps_per_epoch": 16,  # below this many steps an epoch the batch is halved (tiny datasets)
        "lr": 11.5,  # learning rate per 1024 examples (the loss is summed, not averaged)
        "momentum": 0.85,  # Nesterov momentum
        "weight_decay": 0.0153,  # per 1024 examples, decoupled from the learning rate
        "bias_scaler": 64.0,  # BatchNorm biases learn this much faster (no extra weight decay)
        "label_smoothing": 0.2,
        "whiten_bias_epochs": 3,  # the whitening layer's bias trains for this many epochs, then freezes
        "ema_start_epochs": 3,  # the Lookahead EMA starts after this many epochs...
        "ema_every_steps": 5,  # ...is applied every this many steps...
        "ema_decay_base": 0.95,  # ...with a decay warmed up as base**every * (step/total)**pow
        "ema_decay_pow": 3.0,
        "lr_schedule": (0.2, 0.23, 0.07),  # triangle: start factor, peak position (share of steps), end factor
    },
    "aug": {
        "flip": True,  # alternating flip: a random half flipped once, then all flipped every odd epoch
        "translate": 2,  # random crop from a reflect-padded image, up to 2 px each way
    },
    "net": {
        "base_width": 64,  # widths of the three conv groups: 1x, 4x, 4x this
        "whiten_kernel": 2,  # patch size of the whitening convolution
        "whiten_eps": 5e-4,  # added to the patch-covariance eigenvalues
        "whiten_images": 5000,  # images used to estimate the patch covariance
        "batchnorm_momentum": 0.6,  # airbench's convention: running = 0.6 * running + 0.4 * batch
        "scaling_factor": 1 / 9,  # logits are scaled down by this
        "tta_level": 2,  # clean evaluation: 0 none, 1 mirror, 2 mirror + 1-px translations
    },
    "adversarial": {
        "eps": 8 / 255,  # L-infinity radius, in [0, 1] pixel units
        "pgd_train_steps": 5,  # PGD steps per training batch (--adversarial pgd)
        "fgsm_alpha": 1.25,  # FGSM with random start: step = alpha * eps (Wong et al. 2020)
        "pgd_step_factor": 2.5,  # PGD step size = factor * eps / steps (Madry et al. 2018)
        "eval_pgd_steps": 10,  # the PGD attack that measures robust accuracy on the test split
        "tta_level": 0,  # adversarial runs evaluate clean and robust accuracy on the plain network
    },
    "budget": {  # --budget: how the planner (budget.py) spends a time budget; explicit flags always win
        "safety": 0.85,  # plan this share of the time left: calibration error, loading, a shared machine's noise
        "widths": (16, 32, 64),  # candidate network widths, narrowest first (the order calibration measures)
        "target_epochs": 4.0,  # at fixed image-passes, more distinct images beat more epochs down to about this
        "min_train_images": 1000,  # below this few images an arm learns little: take more epochs instead
        "min_epochs": 1.0,  # the plan never goes below one epoch (nor min_train_images): it overruns instead
        "test_images": 2000,  # test subset: a paired difference on 2,000 images resolves about 1 point
        "min_test_images": 500,  # the smallest test subset the planner shrinks to
        "eval_share": 0.2,  # testing may take at most this share of a run
        # images per step while calibrating (1 untimed step, then 3 timed ones): on a CPU the smallest batch a
        # plan of about 1,000 images gets (per image the slowest, so the plan errs short); on CUDA a typical one
        "calibration_batch": {"cpu": 32, "cuda": 512},
        "calibration_steps": 3,
        "calibration_test_images": 128,  # ...and this many test images, per width measured
    },
    "data": {
        "holdout": 0.2,  # share of the images held out for testing when ROOT has no test/val split
        "data_seed": 0,  # seeds the hold-out, the --max-train/--max-test subsets and the injection
        "eval_batch_size": 1000,  # test images per forward pass on a GPU...
        "eval_batch_size_cpu": 100,  # ...and on a CPU (smaller batches stay in cache: about 20% faster here)
    },
}

TTA_VIEWS = {0: 1, 1: 2, 2: 6}  # forward passes per test image at each test-time-augmentation level
ARMS = ("as-is", "deduplicated", "random-removed")
ADVERSARIAL_MODES = ("pgd", "fgsm")
INJECT_MODES = ("uniform", "nonuniform")


@dataclass(frozen=True, slots=True)
class ProbeSettings:
    """What one probe does; every field appears in the JSON report."""

    arms: tuple[str, ...] = ARMS
    seeds: int = 3
    epochs: float = HYPERPARAMETERS["opt"]["epochs"]
    match_steps: bool = False  # smaller arms train for as many optimizer steps as as-is
    size: int = 32  # images are resized (shorter side) and centre-cropped to size x size
    batch_size: int | None = None  # None: chosen from the size of the as-is arm
    width: int = HYPERPARAMETERS["net"]["base_width"]
    adversarial: str | None = None  # None, "pgd" or "fgsm"
    eps: float = HYPERPARAMETERS["adversarial"]["eps"]
    pgd_steps: int = HYPERPARAMETERS["adversarial"]["pgd_train_steps"]
    inject: str | None = None  # None, "uniform" or "nonuniform"
    rates: tuple[float, ...] = ()  # injection rates: share of the injected training set that is copies
    inject_classes: tuple[str, ...] = ()  # nonuniform: the classes that get copies (default: half, at random)
    holdout: float = HYPERPARAMETERS["data"]["holdout"]
    max_train: int | None = None  # a stratified subset of the training images (None: all)
    max_test: int | None = None  # a stratified subset of the test images (None: all)
    device: str = "auto"  # auto, cuda or cpu
    tta_level: int | None = None  # test-time augmentation (TTA_VIEWS); None: the hyperparameters' level
    threads: int | None = None  # torch CPU threads; None: one per core this process may use
    budget_seconds: float | None = None  # --budget: plan width, epochs, subsets and TTA to finish within this
    explicit: tuple[str, ...] = ()  # fields the user set: a budget plan never changes them

    def __post_init__(self) -> None:
        from ..errors import ParameterError

        unknown = [arm for arm in self.arms if arm not in ARMS]
        if unknown or not self.arms:
            raise ParameterError(
                f"unknown {{arms}} entry {unknown[0] if unknown else '(none)'}: choose from {', '.join(ARMS)}"
            )
        if self.seeds < 1:
            raise ParameterError("{seeds} must be at least 1")
        if self.epochs <= 0:
            raise ParameterError("{epochs} must be positive")
        if self.adversarial not in (None, *ADVERSARIAL_MODES):
            raise ParameterError(f"{{adversarial}} must be one of {', '.join(ADVERSARIAL_MODES)}")
        if self.inject not in (None, *INJECT_MODES):
            raise ParameterError(f"{{inject}} must be one of {', '.join(INJECT_MODES)}")
        if self.inject and not self.rates:
            raise ParameterError("{inject} needs injection {rates}")
        if self.rates and not self.inject:
            raise ParameterError("{rates} need {inject} uniform or nonuniform")
        for rate in self.rates:
            if not 0 <= rate < 1:
                raise ParameterError(f"an injection rate ({{rates}}) must be in [0, 1), not {rate}")
        if not 0 < self.holdout < 1:
            raise ParameterError("{holdout} must be between 0 and 1")
        if self.size < 16:
            raise ParameterError("{size} must be at least 16 pixels")
        if self.width < 1 or (self.batch_size is not None and self.batch_size < 2):
            raise ParameterError("{width} must be at least 1 and {batch_size} at least 2")
        if self.device not in ("auto", "cuda", "cpu"):
            raise ParameterError("{device} must be auto, cuda or cpu")
        if self.tta_level is not None and self.tta_level not in TTA_VIEWS:
            raise ParameterError(f"{{tta_level}} must be one of {', '.join(map(str, TTA_VIEWS))}")
        if self.threads is not None and self.threads < 1:
            raise ParameterError("{threads} must be at least 1")
        if self.budget_seconds is not None and self.budget_seconds <= 0:
            raise ParameterError("{budget_seconds} must be a positive duration such as 90s, 5m or 1h")


def batch_size_for(train_images: int, requested: int | None = None) -> int:
    """The batch size: as requested, else airbench's 1024, halved until an epoch has enough steps."""
    if requested:
        return requested
    batch = HYPERPARAMETERS["opt"]["batch_size"]
    while batch > 8 and train_images / batch < HYPERPARAMETERS["opt"]["min_steps_per_epoch"]:
        batch //= 2
    return batch


def total_steps_for(count: int, batch_size: int, epochs: float) -> int:
    """Optimizer steps for `epochs` passes over `count` images in full batches."""
    return max(1, math.ceil(max(1, count // batch_size) * epochs))
