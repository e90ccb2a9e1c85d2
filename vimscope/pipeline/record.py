"""The resume record: which bands of a slide are safely on disk, kept inside the partial output.

A band is recorded only after the chunks it completed were written and flushed, and the record itself is
replaced atomically (write, fsync, rename), so after a kill -9 it never claims more than the store holds.
A record made with other settings (another plan, model or stitch mode) is not resumed: the run starts over.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from vimscope.writers.atomic import atomic_write_json

RECORD_NAME = ".vimscope_resume.json"
VERSION = 1


def run_key(**parts) -> str:
    """A digest of everything that changes the bytes of the output."""
    blob = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


@dataclass
class ResumeRecord:
    path: Path
    key: str
    done_bands: list[int] = field(default_factory=list)
    damaged: dict[int, dict] = field(default_factory=dict)  # tile index -> {"box": level-0 box, "message": str}
    seconds: float = 0.0  # compute time of earlier, interrupted attempts

    @classmethod
    def load(cls, store: Path, key: str) -> ResumeRecord | None:
        """The record in ``store`` if it was made with the same ``key``; None otherwise."""
        path = Path(store) / RECORD_NAME
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        if data.get("version") != VERSION or data.get("key") != key:
            return None
        return cls(
            path=path,
            key=key,
            done_bands=[int(b) for b in data.get("done_bands", [])],
            damaged={int(k): v for k, v in data.get("damaged", {}).items()},
            seconds=float(data.get("seconds", 0.0)),
        )

    @classmethod
    def fresh(cls, store: Path, key: str) -> ResumeRecord:
        return cls(path=Path(store) / RECORD_NAME, key=key)

    def save(self) -> None:
        atomic_write_json(
            self.path,
            {
                "version": VERSION,
                "key": self.key,
                "done_bands": sorted(self.done_bands),
                "damaged": {str(k): v for k, v in sorted(self.damaged.items())},
                "seconds": round(self.seconds, 3),
            },
            indent=None,
        )

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
