"""``TrainConfig``: one training run as data (YAML), validated key by key like every vimscope config.

The ``model`` block names a packaged model (``base``) and overrides any of its IO contract (classes, mpp, tile,
head, postprocess) or architecture; ``family: unet`` gives the U-Net baseline instead. ``data`` is a list of
dataset entries (see ``vimscope.train.datasets``), ``split`` holds validation images out by name (never tiles).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from vimscope.config import ModelSpec, from_dict, load_yaml, packaged_config
from vimscope.errors import ConfigError
from vimscope.train.augment import AugmentConfig
from vimscope.train.losses import LossConfig

__all__ = [
    "SplitConfig",
    "TrainConfig",
    "config_base",
    "instance_maps",
    "load_train_config",
    "model_mpp",
    "resolve_spec",
]

AMP_MODES = ("auto", "bf16", "off")
SELECT = ("auto", "aji", "mean_dice", "object_f1", "loss")


@dataclass
class SplitConfig:
    """Validation images: by name (``validation``), or a ``fraction`` spread over groups (organs, sites)."""

    validation: list[str] = field(default_factory=list)
    fraction: float = 0.0
    seed: int = 0

    def validate(self) -> None:
        if not 0 <= self.fraction < 1:
            raise ConfigError(f"split.fraction must be in [0, 1), not {self.fraction}")
        if self.validation and self.fraction:
            raise ConfigError("split: give either validation names or a fraction, not both")


@dataclass
class TrainConfig:
    model: dict
    data: list[dict]
    split: SplitConfig = field(default_factory=SplitConfig)
    out: str = "runs/train"
    tile: int = 256  # training tile (pixels at the model's mpp)
    batch_size: int = 8
    epochs: int = 10
    steps_per_epoch: int = 100
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_steps: int = 100
    min_lr_ratio: float = 0.01
    grad_clip: float = 1.0
    amp: str = "auto"  # bf16 autocast on CUDA ("auto" or "bf16"); the scan and the residual stay float32
    seed: int = 0
    device: str = "auto"
    normalize: str = "spec"  # "spec": the model's mean/std; "dataset": measured on the training images
    targets: list[str] | None = None  # instance maps to learn (boundary, distance); None: the head's extra maps
    boundary_width: int = 2
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    val_every: int = 1  # validate every N epochs (and after the last)
    val_batch_size: int = 4
    select: str = "auto"  # metric that picks best.safetensors: aji (instances) / mean_dice (classes) / loss
    max_minutes: float | None = None  # stop cleanly (checkpoint saved, best exported, resumable) after this long
    budget_minutes: float | None = None  # choose ``epochs`` after timing the first steps so the run fits this
    tune_postprocess: bool = False  # instance models: choose thresholds on the validation images at the end
    log_every: int = 10
    init: str | None = None  # official Vim checkpoint for the backbone (a new head)
    export_dtype: str = "float16"  # dtype of the exported model.safetensors

    def validate(self) -> None:
        positive = ("tile", "batch_size", "epochs", "steps_per_epoch", "val_every", "log_every", "val_batch_size")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, not {getattr(self, name)}")
        if not self.lr > 0 or self.weight_decay < 0 or self.warmup_steps < 0 or self.grad_clip < 0:
            raise ConfigError("lr must be positive; weight_decay, warmup_steps and grad_clip non-negative")
        if self.amp not in AMP_MODES:
            raise ConfigError(f"amp must be one of {', '.join(AMP_MODES)}, not {self.amp!r}")
        if self.select not in SELECT:
            raise ConfigError(f"select must be one of {', '.join(SELECT)}, not {self.select!r}")
        if self.normalize not in ("spec", "dataset"):
            raise ConfigError(f"normalize must be spec or dataset, not {self.normalize!r}")
        if self.export_dtype not in ("float16", "bfloat16", "float32"):
            raise ConfigError(f"export_dtype must be float16, bfloat16 or float32, not {self.export_dtype!r}")
        if not self.data:
            raise ConfigError("data: at least one dataset entry is needed")
        if self.budget_minutes is not None and self.budget_minutes <= 0:
            raise ConfigError("budget_minutes must be positive")
        for t in self.targets or []:
            if t not in ("boundary", "distance"):
                raise ConfigError(f"targets: unknown map {t!r} (known: boundary, distance)")

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def load_train_config(path: str | Path | None = None, **overrides) -> TrainConfig:
    """A YAML file (or a packaged name under ``vimscope/configs/train``) plus top-level overrides."""
    p = Path(str(path)) if path is not None else None
    if p is not None and not p.suffix and not p.exists():
        p = packaged_config("train", str(path))
    data = load_yaml(p) if p is not None else {}
    data.update({k: v for k, v in overrides.items() if v is not None})
    return from_dict(TrainConfig, data)


def config_base(config: str | Path) -> Path:
    """Where a config's relative paths start: its own folder, except for the packaged configs (given by name or
    path), whose paths start at the working directory (they name ``../shared/...`` from the repository root)."""
    from importlib import resources

    p = Path(str(config))
    if not p.is_file():
        return Path.cwd()
    packaged = Path(str(resources.files("vimscope") / "configs")).resolve()
    return Path.cwd() if packaged in p.resolve().parents else p.resolve().parent


def resolve_spec(model: dict, *, tile: int, class_names: list[str] | None = None) -> ModelSpec:
    """The model's IO contract from the config's ``model`` block; classes default to the base model's, else the
    data's."""
    from vimscope.models.resolve import load_spec
    from vimscope.models.specs import apply_overrides, class_dicts, finalize_spec

    options = dict(model)
    if "classes" in options:
        options["classes"] = class_dicts(options["classes"])
    if options.get("family") == "unet":
        options.pop("base", None)
        options.setdefault("name", "unet")
        options.setdefault("classes", class_dicts(class_names or []))
        options.setdefault("tile", max(tile, 256))
        options.setdefault("halo", min(32, options["tile"] // 8))
        return finalize_spec(from_dict(ModelSpec, options, prefix="model."))
    base = options.pop("base", None)
    if base is None:
        if "name" not in options:
            raise ConfigError("model: give a packaged model as 'base' (see `vimscope info --models`) or a full spec")
        options.setdefault("classes", class_dicts(class_names or []))
        spec = finalize_spec(from_dict(ModelSpec, options, prefix="model."))
    else:
        spec = load_spec(base)
        if not spec.classes and "classes" not in options and class_names:  # a backbone config: the data's classes
            options["classes"] = class_dicts(class_names)
        spec = apply_overrides(spec, options)
    if spec.family == "vim" and "img_size" not in (model.get("arch") or {}):
        # the position embedding is learned at the training tile (resampled for other tile sizes)
        spec = apply_overrides(spec, {"arch": {"img_size": [tile, tile]}})
    return spec


def model_mpp(model: dict) -> float | None:
    """The model's resolution before its spec is resolved (slides are read at it, not at full resolution)."""
    if "mpp" in model or model.get("family") == "unet" or "base" not in model:
        return model.get("mpp")
    from vimscope.models.resolve import load_spec

    return load_spec(model["base"]).mpp


def instance_maps(config: TrainConfig, spec: ModelSpec) -> list[str]:
    """The instance maps to learn: the config's ``targets``, else the head's boundary / distance maps."""
    extra = dict(spec.head.get("extra_maps") or {})
    maps = list(config.targets) if config.targets is not None else [k for k in extra if k in ("boundary", "distance")]
    missing = [k for k in maps if k not in extra]
    if missing:
        raise ConfigError(f"targets ask for {missing[0]!r} but the model head has no such map (head.extra_maps)")
    return maps
