"""Per-slide state files in the batch output: what was done, with which settings, how long it took, what failed.

Layout under the output folder ``OUT``::

    OUT/<name>/...                      the slide's outputs (written by the pipeline)
    OUT/_batch/state/<name>.json        its state (this module)
    OUT/_batch/leases/<name>.lease      who works on it now (vimscope.runners.lease)
    OUT/report.json, OUT/report.md      the last run's report

Every write is atomic (temporary file in the same folder, fsync, rename), so a crash or a reader on another
host never sees half a file. The config hash covers what changes a slide's outputs (the pipeline settings,
its manifest overrides, the weights' bytes) and not how the run goes (workers, device, batch size), so a
re-run with more workers recomputes nothing.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from vimscope import __version__

STATUSES = ("pending", "running", "done", "failed")
BATCH_DIR = "_batch"


@dataclass
class SlideState:
    """The state file of one slide. ``attempts`` keeps every try, so "done exactly once" can be checked."""

    name: str
    slide: str
    status: str = "pending"
    config_hash: str | None = None
    source: dict | None = None  # size and mtime of the slide file when it was processed
    config: dict = field(default_factory=dict)  # the effective settings of this slide
    versions: dict = field(default_factory=dict)
    attempts: list[dict] = field(default_factory=list)  # run, host, pid, started, finished, seconds, outcome, error
    error: str | None = None  # one line
    error_type: str | None = None
    traceback: str | None = None  # only for internal errors (bugs), to report them
    timings: dict = field(default_factory=dict)  # seconds: total of the last attempt, and the pipeline's own
    summary: dict = field(default_factory=dict)  # the pipeline's result summary
    outputs: dict = field(default_factory=dict)  # output name -> path
    updated: float = 0.0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> SlideState:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    @property
    def done_count(self) -> int:
        return sum(1 for a in self.attempts if a.get("outcome") == "done")

    @property
    def seconds(self) -> float | None:
        return self.timings.get("total")


class StateStore:
    """Reads and writes the state files of one batch output folder."""

    def __init__(self, out_root: str | Path):
        self.out_root = Path(out_root)
        self.root = self.out_root / BATCH_DIR
        self.state_dir = self.root / "state"
        self.lease_dir = self.root / "leases"

    def ensure(self) -> None:
        for d in (self.state_dir, self.lease_dir):
            d.mkdir(parents=True, exist_ok=True)

    def path(self, name: str) -> Path:
        return self.state_dir / f"{name}.json"

    def lease_path(self, name: str) -> Path:
        return self.lease_dir / f"{name}.lease"

    def output_dir(self, name: str) -> Path:
        return self.out_root / name

    def load(self, name: str) -> SlideState | None:
        try:
            data = json.loads(self.path(name).read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return None  # unreadable: treated as never run (the slide is redone, never skipped wrongly)
        return SlideState.from_dict(data)

    def save(self, state: SlideState, *, exclusive: bool = False) -> bool:
        """Write ``state`` atomically; with ``exclusive`` only if no state file exists yet (returns False then).

        A new ``pending`` record is not fsynced (losing one in a crash loses nothing): registering ten
        thousand slides on a network filesystem then takes seconds, not minutes."""
        state.updated = time.time()
        text = json.dumps(state.to_dict(), indent=1, sort_keys=True, default=str)
        return atomic_write_text(self.path(state.name), text, exclusive=exclusive, durable=state.status != "pending")

    def names(self) -> list[str]:
        return sorted(p.stem for p in self.state_dir.glob("*.json"))


def atomic_write_text(path: Path, text: str, *, exclusive: bool = False, durable: bool = True) -> bool:
    """Write through a temporary file and a rename (or a hard link when ``exclusive``: fails if ``path`` exists);
    ``durable`` fsyncs the data before it gets its name."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        if exclusive:
            try:
                os.link(tmp, path)
            except FileExistsError:
                return False
            finally:
                os.unlink(tmp)
        else:
            os.replace(tmp, path)
        return True
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def source_signature(path: str | Path) -> dict | None:
    """Size and modification time of a slide: a changed file is processed again."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def config_hash(config: dict, overrides: dict | None = None) -> str:
    """A short, stable digest of everything that changes a slide's outputs: the pipeline's done-key
    (``vimscope.pipeline.settings_key``), so ``segment`` and ``batch`` count "done" the same way."""
    from vimscope.pipeline import settings_key

    return settings_key(config, overrides)


def is_current(state: SlideState | None, digest: str, source: dict | None) -> bool:
    """Done with these settings on this very file: nothing to do."""
    if state is None or state.status != "done" or state.config_hash != digest:
        return False
    return source is None or state.source is None or state.source == source


def versions() -> dict:
    """Versions of what produced the outputs (only modules already imported, so this stays cheap)."""
    info = {"vimscope": __version__, "python": platform.python_version(), "host": socket.gethostname()}
    for mod in ("numpy", "torch", "triton", "zarr", "tifffile", "openslide", "distributed"):
        m = sys.modules.get(mod)
        if m is not None:
            info[mod] = getattr(m, "__version__", None)
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        info["cuda"] = torch.version.cuda
        info["gpu"] = torch.cuda.get_device_name()
    return info
