"""Does `vimscope segment` write the same bytes when the same slide runs twice in two processes (on the GPU)?

A retried or resumed slide in `vimscope batch` relies on it: the second process must reproduce the first one's
outputs. Two separate `python -m vimscope segment` runs of a generated JPEG-tiled slide; the hashes of every output
file except the summary/report JSON and the preview compared. Writes a JSON with the hashes and the verdict.

    python -m benchmarks.pipeline.determinism --out gpu_out/determinism.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from vimscope.synthetic import jpeg_pyramid


def output_hashes(folder: Path) -> dict[str, str]:
    hashes = {}
    for f in sorted(folder.rglob("*")):
        if f.is_file() and f.suffix not in (".json", ".md", ".png") and not f.name.startswith("."):
            hashes[f.relative_to(folder).as_posix()] = hashlib.sha256(f.read_bytes()).hexdigest()[:16]
    return hashes


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vimscope-det-"))
    slide = work / "det.tif"
    jpeg_pyramid(slide, args.size, seed=7)
    runs = []
    for name in ("a", "b"):
        t = time.time()
        cmd = [sys.executable, "-m", "vimscope", "segment", str(slide), "-o", str(work / name), "-q"]
        proc = subprocess.run([*cmd, "--device", args.device], capture_output=True, text=True)
        summary = json.loads((work / name / "det.summary.json").read_text()) if proc.returncode == 0 else {}
        runs.append(
            {
                "rc": proc.returncode,
                "seconds": round(time.time() - t, 2),
                "stderr_tail": proc.stderr[-400:],
                "timings_s": summary.get("timings_s"),
                "objects": summary.get("objects"),
                "hashes": output_hashes(work / name),
            }
        )
    a, b = runs[0]["hashes"], runs[1]["hashes"]
    differ = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
    doc = {"size": args.size, "identical": bool(a) and not differ, "files": len(a), "differ": differ, "runs": runs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"determinism: {len(a)} files, identical={doc['identical']}, differ={differ[:8]}")
    return 0 if doc["identical"] else 1


if __name__ == "__main__":
    sys.exit(main())
