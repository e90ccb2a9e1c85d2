"""The training loop: ``Trainer(config).iter_train()`` yields events (the CLI draws a progress bar from them).

One run = ``epochs`` x ``steps_per_epoch`` optimizer steps on random tiles (AdamW, warm-up + cosine, gradient
clipping, bf16 autocast on CUDA), validation on held-out whole images after each epoch (tiled prediction,
instance post-processing, Dice / IoU / AJI / object F1), and in ``out``:

- ``last.safetensors`` (+ ``last.optim.safetensors``): resumable, written every epoch and when stopped;
- ``best.safetensors``: the weights of the best validation epoch; ``model.safetensors``: those weights in
  ``export_dtype`` (float16) with the final IO contract, ready to ship;
- ``metrics.json`` (one entry per epoch) and ``metrics.png``; ``config.json`` (the resolved config and split).

Resuming restores weights, optimizer, step and every RNG state, and keeps the saved config's schedule, so a
run stopped after epoch k and resumed ends with the weights of an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from vimscope.errors import ConfigError
from vimscope.models.checkpoint import init_backbone
from vimscope.models.device import resolve_device
from vimscope.models.registry import build_model
from vimscope.models.weights import save_weights
from vimscope.train.config import TrainConfig, instance_maps, model_mpp, resolve_spec
from vimscope.train.datasets.base import LabelledImage, LoadContext, load_sources
from vimscope.train.datasets.split import choose_validation, split_images
from vimscope.train.losses import segmentation_loss
from vimscope.train.optim import param_groups
from vimscope.train.plot import plot_history
from vimscope.train.resume import load_checkpoint, resumed_config, save_checkpoint
from vimscope.train.sampler import TileSampler, rescale_to
from vimscope.train.schedule import lr_at
from vimscope.train.validation import tune_thresholds, validate

__all__ = ["TrainEvent", "Trainer"]


@dataclass
class TrainEvent:
    kind: str  # "start", "step", "calibrated", "epoch", "stopped", "done"
    step: int
    total: int
    epoch: int
    epochs: int
    loss: float | None = None
    lr: float | None = None
    metrics: dict = field(default_factory=dict)
    message: str = ""


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(type(o).__name__)


def _write_json(path: Path, data) -> None:
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(json.dumps(data, indent=1, default=_json_default))
    tmp.replace(path)


class Trainer:
    """Set up a run from a config (data, split, model, optimizer); ``iter_train`` runs it."""

    def __init__(
        self,
        config: TrainConfig,
        *,
        base_dir: Path | None = None,
        out: str | Path | None = None,
        resume: bool = False,
        init: str | Path | None = None,
        device: str | None = None,
        overwrite: bool = False,
        images: list[LabelledImage] | None = None,
    ) -> None:
        self.out = Path(out if out is not None else config.out)
        if base_dir is not None and not self.out.is_absolute() and out is None:
            self.out = base_dir / self.out
        self.out = self.out.resolve()
        self.last_path = self.out / "last.safetensors"
        config, self.resume_meta = resumed_config(config, self.last_path, resume=resume, overwrite=overwrite)
        if device is not None:
            config = replace(config, device=device)
        if init is not None:
            config = replace(config, init=str(init))
        self.config = config
        self.base_dir = base_dir
        self.device = resolve_device(config.device)
        self.amp = config.amp == "bf16" or (config.amp == "auto" and self.device.type == "cuda")
        if self.amp and self.device.type != "cuda":
            self.amp = False  # bf16 autocast is for the GPU; the CPU path stays float32
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed tile sizes: let cuDNN pick its fastest convolutions

        spec0 = self.resume_meta["spec"] if self.resume_meta else None
        train_images, val_images = self._load_split(images, spec0.mpp if spec0 else model_mpp(config.model))
        class_names = (train_images or val_images)[0].class_names

        # model (the resumed run's spec as saved: it may carry dataset statistics)
        self.spec = (
            spec0 if spec0 is not None else resolve_spec(config.model, tile=config.tile, class_names=class_names)
        )
        if len(self.spec.classes) != len(class_names):
            raise ConfigError(
                f"the model has {len(self.spec.classes)} classes but the data {len(class_names)} ({class_names})"
            )
        if config.tile % self.spec.size_multiple:
            raise ConfigError(f"tile {config.tile} must be a multiple of {self.spec.size_multiple} for this model")
        self.instance_maps = instance_maps(config, self.spec)
        self.instances = bool(self.instance_maps) or self.spec.output == "nuclei"
        if self.instances and any(im.instances is None for im in train_images):
            raise ConfigError("an instance model needs instance labels; this data has class masks only")

        self.train_images = [rescale_to(im, self.spec.mpp) for im in train_images]
        self.val_images = [rescale_to(im, self.spec.mpp) for im in val_images]
        torch.manual_seed(config.seed)
        self.model = build_model(self.spec).to(self.device)
        if config.init and not self.resume_meta:
            init_backbone(self.model, config.init)
        self.sampler = self._make_sampler()
        self.model.spec = self.spec
        self.optimizer = torch.optim.AdamW(param_groups(self.model, config.weight_decay), lr=config.lr)
        self.generator = torch.Generator().manual_seed(config.seed + 1)
        self.step = 0
        self.calibration: dict | None = None
        self.history: list[dict] = []
        self.best: dict = {}
        if self.resume_meta:
            self._restore()
        select = config.select
        if select == "auto":
            select = "loss" if not self.val_images else ("aji" if self.instances else "mean_dice")
        self.select = select

    def _make_sampler(self) -> TileSampler:
        """Random training tiles; with ``normalize: dataset`` the spec takes the training images' mean and std."""
        sampler = TileSampler(
            self.train_images,
            tile=self.config.tile,
            mean=self.spec.mean,
            std=self.spec.std,
            augment=self.config.augment,
            instance_maps=self.instance_maps,
            boundary_width=self.config.boundary_width,
            device=self.device,
        )
        if self.config.normalize == "dataset" and not self.resume_meta:
            mean, std = sampler.dataset_stats()
            self.spec = replace(self.spec, mean=mean, std=std)
            sampler.mean = torch.as_tensor(mean, device=self.device).view(1, -1, 1, 1)
            sampler.std = torch.as_tensor(std, device=self.device).view(1, -1, 1, 1)
        return sampler

    def _load_split(self, images: list[LabelledImage] | None, mpp: float | None) -> tuple[list, list]:
        """The labelled images (given, or read at ``mpp``) split by image into training and validation."""
        config = self.config
        images = (
            images if images is not None else load_sources(config.data, LoadContext(base=self.base_dir, target_mpp=mpp))
        )
        validation = config.split.validation or choose_validation(images, config.split.fraction, config.split.seed)
        train_images, val_images = split_images(images, validation)
        self.split = {"train": [im.name for im in train_images], "validation": [im.name for im in val_images]}
        return train_images, val_images

    # ---- state ------------------------------------------------------------------------------------------------

    def _restore(self) -> None:
        """Weights, optimizer, step, history and RNG states of the run being resumed."""
        meta = load_checkpoint(self.last_path, self.model, self.optimizer)
        state = meta["state"]
        self.step = int(state["step"])
        self.history = list(state.get("history", []))
        self.best = dict(state.get("best", {}))
        self.calibration = state.get("calibration")
        self._set_rng(meta["rng"])

    def _rng(self) -> dict[str, torch.Tensor]:
        rng = {"sampler": self.generator.get_state(), "torch_cpu": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["torch_cuda"] = torch.cuda.get_rng_state(self.device)
        return rng

    def _set_rng(self, rng: dict[str, torch.Tensor]) -> None:
        if "sampler" in rng:
            self.generator.set_state(rng["sampler"])
        if "torch_cpu" in rng:
            torch.set_rng_state(rng["torch_cpu"])
        if "torch_cuda" in rng and self.device.type == "cuda":
            torch.cuda.set_rng_state(rng["torch_cuda"], self.device)

    def _state(self) -> dict:
        return {
            "step": self.step,
            "epoch": self.step // self.config.steps_per_epoch,
            "total_steps": self.config.total_steps,
            "history": self.history,
            "best": self.best,
            "split": self.split,
            "base_dir": str(self.base_dir) if self.base_dir is not None else None,
            "calibration": self.calibration,
        }

    def _config_dict(self) -> dict:
        return self.config.to_dict()

    def save_last(self) -> None:
        save_checkpoint(
            self.last_path,
            self.model,
            spec=self.spec,
            train_config=self._config_dict(),
            state=self._state(),
            optimizer=self.optimizer,
            rng=self._rng(),
        )

    # ---- steps ------------------------------------------------------------------------------------------------

    def _autocast(self):
        if self.amp:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def train_step(self) -> dict[str, torch.Tensor]:
        cfg = self.config
        lr = lr_at(
            self.step, total=cfg.total_steps, base_lr=cfg.lr, warmup=cfg.warmup_steps, min_lr_ratio=cfg.min_lr_ratio
        )
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        x, targets = self.sampler.sample(cfg.batch_size, self.generator)
        self.model.train()
        with self._autocast():
            outputs = self.model(x)
        loss, parts = segmentation_loss(outputs, targets, cfg.loss)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            parts["grad_norm"] = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip).detach()
        self.optimizer.step()
        self.step += 1
        parts["lr"] = torch.tensor(lr)
        return parts

    def run_validation(self) -> dict:
        return validate(
            self.model,
            self.spec,
            self.val_images,
            instances=self.instances,
            batch_size=self.config.val_batch_size,
            amp=self.amp,
        )

    # ---- the run ----------------------------------------------------------------------------------------------

    def _stop_reason(self, start: float, cancel) -> str | None:
        limit = self.config.max_minutes
        if limit is not None and time.monotonic() - start > limit * 60:
            return "time limit"
        if cancel is not None and cancel.cancelled:
            return "cancelled"
        return None

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _calibrate(self, start: float, seconds_per_step: float) -> str:
        """Fix ``epochs`` so the run ends within ``budget_minutes`` (validation and export included).

        Called during warm-up, when no learning rate has yet depended on the total number of steps. The chosen
        number of epochs is saved in the config, so a resumed run keeps the same schedule."""
        cfg = self.config
        t0 = time.monotonic()
        if self.val_images:
            self.run_validation()
        val_seconds = time.monotonic() - t0
        elapsed = time.monotonic() - start
        reserve = 2 * val_seconds + 10 + (4 * val_seconds if cfg.tune_postprocess else 0)
        remaining = cfg.budget_minutes * 60 - elapsed - reserve
        per_step = seconds_per_step + val_seconds / (cfg.val_every * cfg.steps_per_epoch)
        affordable = self.step + max(remaining, 0) / per_step
        epochs = max(self.step // cfg.steps_per_epoch + 1, int(affordable // cfg.steps_per_epoch))
        self.config = replace(cfg, epochs=epochs, budget_minutes=None)
        self.calibration = {
            "seconds_per_step": round(seconds_per_step, 5),
            "validation_seconds": round(val_seconds, 2),
            "epochs": epochs,
            "budget_minutes": cfg.budget_minutes,
        }
        return (
            f"{seconds_per_step * 1000:.0f} ms/step, validation {val_seconds:.1f} s: "
            f"{epochs} epochs ({epochs * cfg.steps_per_epoch} steps) fit {cfg.budget_minutes} min"
        )

    def iter_train(self, cancel=None) -> Iterator[TrainEvent]:
        self.out.mkdir(parents=True, exist_ok=True)
        _write_json(
            self.out / "config.json",
            {"train_config": self._config_dict(), "spec": asdict(self.spec), "split": self.split},
        )
        start = time.monotonic()
        calibrate_at = None
        if self.config.budget_minutes is not None:  # time steps after the first ones (allocation, compile), within
            calibrate_at = min(100, max(5, self.config.warmup_steps // 2))  # the warm-up, over up to 100 steps
        cfg = self.config
        epoch0 = self.step // cfg.steps_per_epoch
        yield TrainEvent("start", self.step, cfg.total_steps, epoch0, cfg.epochs, message=str(self.out))
        done_here, t_timing = 0, None
        while self.step < self.config.total_steps:
            cfg = self.config
            epoch = self.step // cfg.steps_per_epoch
            sums: dict[str, torch.Tensor] = {}
            count = 0
            t_epoch = time.monotonic()
            while True:
                parts = self.train_step()
                count += 1
                done_here += 1
                for k, v in parts.items():
                    if k != "lr":
                        sums[k] = sums.get(k, 0) + v.float()
                end_of_epoch = self.step % cfg.steps_per_epoch == 0
                if self.step % cfg.log_every == 0 or end_of_epoch:
                    loss, lr = float(parts["loss"]), float(parts["lr"])
                    yield TrainEvent("step", self.step, cfg.total_steps, epoch, cfg.epochs, loss=loss, lr=lr)
                if calibrate_at is not None and done_here == 2:
                    self._sync()
                    t_timing = time.monotonic()
                if calibrate_at is not None and done_here == calibrate_at + 2:
                    self._sync()
                    message = self._calibrate(start, (time.monotonic() - t_timing) / calibrate_at)
                    calibrate_at = None
                    cfg = self.config
                    yield TrainEvent("calibrated", self.step, cfg.total_steps, epoch, cfg.epochs, message=message)
                    end_of_epoch = self.step % cfg.steps_per_epoch == 0
                stop = self._stop_reason(start, cancel)
                if end_of_epoch or stop:
                    break
            if not end_of_epoch:  # stopped inside an epoch: keep the place, resume finishes the epoch
                yield self._stopped(stop, epoch)
                return
            row = {
                "epoch": epoch + 1,
                "step": self.step,
                "lr": float(parts["lr"]),
                "seconds": round(time.monotonic() - t_epoch, 2),
                "steps_per_second": round(count / max(time.monotonic() - t_epoch, 1e-9), 3),
            }
            row.update({f"train_{k}": float(v) / count for k, v in sums.items()})
            last_epoch = self.step >= cfg.total_steps
            if self.val_images and ((epoch + 1) % cfg.val_every == 0 or last_epoch):
                summary = self.run_validation()
                row.update({f"val_{k}": v for k, v in summary.items() if k != "per_image"})
                row["val_per_image"] = summary["per_image"]
            self.history.append(row)
            self._maybe_best(row)
            self.save_last()
            _write_json(self.out / "metrics.json", self.history)
            plot_history(self.history, self.out / "metrics.png")
            yield TrainEvent(
                "epoch", self.step, cfg.total_steps, epoch + 1, cfg.epochs, row.get("train_loss"), metrics=row
            )
            stop = self._stop_reason(start, cancel)
            if stop and not last_epoch:
                yield self._stopped(stop, epoch + 1)
                return
        summary = self.finish()
        cfg = self.config
        yield TrainEvent(
            "done", self.step, cfg.total_steps, cfg.epochs, cfg.epochs, metrics=summary, message=str(self.out)
        )

    def _stopped(self, why: str, epoch: int) -> TrainEvent:
        """Save the place (resumable) and, when an epoch has finished, export what is best so far."""
        self.save_last()
        summary = self.finish() if self.history else {}
        cfg = self.config
        message = f"{why} at step {self.step}; `vimscope train CONFIG --resume` continues"
        return TrainEvent("stopped", self.step, cfg.total_steps, epoch, cfg.epochs, metrics=summary, message=message)

    def _score(self, row: dict) -> float | None:
        if self.select == "loss":
            v = row.get("train_loss")
            return None if v is None else -float(v)
        v = row.get(f"val_{self.select}")
        return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)

    def _maybe_best(self, row: dict) -> None:
        score = self._score(row)
        if score is None:
            return
        if not self.best or score > self.best["score"]:
            self.best = {"score": score, "metric": self.select, "epoch": row["epoch"], "step": row["step"]}
            save_checkpoint(
                self.out / "best.safetensors",
                self.model,
                spec=replace(self.spec, trained=True),
                train_config=self._config_dict(),
                state={**self._state(), "metrics": {k: v for k, v in row.items() if k != "val_per_image"}},
            )

    def finish(self) -> dict:
        """Export the best (or last) weights in ``export_dtype`` as ``model.safetensors`` (thresholds tuned on the
        validation images first, when asked); returns a summary, also written to ``summary.json``."""
        best_path = self.out / "best.safetensors"
        source = best_path if best_path.is_file() else self.last_path
        model = build_model(self.spec).to(self.device)
        load_checkpoint(source, model)
        metrics = next((h for h in self.history if h["epoch"] == self.best.get("epoch")), self.history[-1])
        metrics = {k: v for k, v in metrics.items() if k != "val_per_image"}
        spec = replace(self.spec, trained=True)
        tuned = None
        if self.config.tune_postprocess and self.instances and self.val_images:
            tuned = tune_thresholds(
                model, self.spec, self.val_images, batch_size=self.config.val_batch_size, amp=self.amp
            )
            spec = replace(spec, postprocess={**spec.postprocess, **tuned["params"]})
        save_weights(
            model,
            self.out / "model.safetensors",
            spec=spec,
            train_config=self._config_dict(),
            state={**self._state(), "metrics": metrics, "tuned": tuned, "history": []},
            dtype=getattr(torch, self.config.export_dtype),
        )
        summary = {
            "out": str(self.out),
            "steps": self.step,
            "best": self.best,
            "metrics": metrics,
            "postprocess": spec.postprocess,
            "tuned": tuned,
            "calibration": self.calibration,
            "weights": str(self.out / "model.safetensors"),
        }
        _write_json(self.out / "summary.json", summary)
        return summary

    def fit(self, cancel=None) -> dict:
        """Run to the end (or a stop); returns the last event's metrics."""
        last = None
        for event in self.iter_train(cancel):
            last = event
        return last.metrics if last is not None else {}
