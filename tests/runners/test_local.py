"""`vimscope batch` with local worker processes: failures recorded, resume, concurrent runs, stale leases, kills."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

from tests.runners.conftest import (
    PIPELINE_ARGS,
    batch_cmd,
    done_attempts,
    start_batch,
    states,
    store_digest,
    write_corrupt,
    write_slide,
)
from vimscope.cli.main import main
from vimscope.runners.lease import LeaseInfo


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_manifest_batch_records_failures_and_a_rerun_recomputes_nothing(tmp_path, capsys):
    data, out = tmp_path / "data", tmp_path / "out"
    for i in range(3):
        write_slide(data / f"s{i}.tif", seed=i)
    write_corrupt(data / "broken.tif")
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "path,mpp,target_mpp,roi,name\n"
        "data/s0.tif,,,,first\n"
        "data/s1.tif,0.25,1.0,,\n"  # overrides: a finer pixel size, run at 1 µm/px -> a quarter of the pixels
        'data/s2.tif,,,"0,0,128,128",\n'
        "data/broken.tif,,,,\n"
        "data/missing.tif,,,,\n"
        "data/s0.tif,abc,,,bad-mpp\n"
    )
    rc = main(["batch", str(manifest), "-o", str(out), "--workers", "2", *PIPELINE_ARGS])
    assert rc == 12, capsys.readouterr().err  # some slides failed: the exit status says so
    st = states(out)
    assert {n: s["status"] for n, s in st.items()} == {
        "first": "done",
        "s1": "done",
        "s2": "done",
        "broken": "failed",
        "missing": "failed",
        "bad-mpp": "failed",
    }
    assert "damaged TIFF" in st["broken"]["error"]
    assert st["missing"]["error"].endswith("missing.tif: no such file or folder")
    assert st["bad-mpp"]["error"] == "manifest row 7: mpp must be a positive number, got 'abc'"
    assert st["s1"]["summary"]["out_shape"] == [64, 80]  # 256 x 320 px at 0.25 µm/px, run at 1 µm/px
    assert st["first"]["summary"]["out_shape"] == [256, 320]
    assert st["s1"]["config"]["mpp"] == 0.25 and st["first"]["config"]["mpp"] is None
    assert st["s1"]["config_hash"] != st["first"]["config_hash"]
    assert st["first"]["versions"]["vimscope"] and st["first"]["timings"]["total"] > 0
    report = json.loads((out / "report.json").read_text())
    assert report["counts"] == {"pending": 0, "running": 0, "done": 3, "failed": 3, "total": 6}
    assert {f["name"] for f in report["failures"]} == {"broken", "missing", "bad-mpp"}
    assert "| `broken` |" in (out / "report.md").read_text()

    # the ROI slide has classes only inside its box (outside is background, class 0)
    import zarr

    classes = zarr.open_group(str(out / "s2" / "s2.ome.zarr"), mode="r")["labels/classes/0"][...]
    assert classes[128:, :].max() == 0 and classes[:, 128:].max() == 0 and classes[:128, :128].max() > 0

    before = {n: (store_digest(out, n), os.stat(out / n).st_mtime_ns) for n in ("first", "s1", "s2")}
    t0 = time.perf_counter()
    rc = main(["batch", str(manifest), "-o", str(out), "--workers", "2", *PIPELINE_ARGS])
    assert rc == 12 and time.perf_counter() - t0 < 5, "a finished batch re-runs without starting workers"
    again = states(out)
    assert {n: len(s["attempts"]) for n, s in again.items()} == {n: len(s["attempts"]) for n, s in st.items()}
    assert {n: (store_digest(out, n), os.stat(out / n).st_mtime_ns) for n in before} == before
    assert json.loads((out / "report.json").read_text())["this_run"] == {"skipped": 6}

    # --retry-failed runs the failed ones again (and only them); a fixed file now succeeds
    write_slide(data / "missing.tif", seed=7)
    rc = main(["batch", str(manifest), "-o", str(out), "--workers", "1", "--retry-failed", *PIPELINE_ARGS])
    assert rc == 12
    final = states(out)
    assert final["missing"]["status"] == "done" and final["broken"]["status"] == "failed"
    assert len(final["broken"]["attempts"]) == 2 and len(final["first"]["attempts"]) == 1


def test_two_concurrent_batch_runs_share_the_slides_and_do_each_once(tmp_path):
    data, out = tmp_path / "data", tmp_path / "out"
    for i in range(8):
        write_slide(data / f"s{i}.tif", 512, 640, seed=i)
    args = [data, "-o", out, "--workers", "1", *PIPELINE_ARGS]
    runs = [start_batch(*args, log=tmp_path / f"run{i}.log") for i in range(2)]
    codes = [p.wait(timeout=80) for p in runs]
    logs = [(tmp_path / f"run{i}.log").read_text() for i in range(2)]
    assert codes == [0, 0], logs
    st = states(out)
    assert len(st) == 8 and all(s["status"] == "done" for s in st.values())
    assert all(done_attempts(s) == 1 and len(s["attempts"]) == 1 for s in st.values()), "a slide was done twice"
    assert len({s["attempts"][0]["run"] for s in st.values()}) == 2, "both runs should have taken slides"
    for log in logs:
        assert "8 of 8 slides done, 0 failed" in log


def test_stale_lease_of_a_dead_process_is_taken_over_and_a_killed_worker_is_retried(tmp_path):
    data, out = tmp_path / "data", tmp_path / "out"
    write_slide(data / "a.tif", seed=1)
    write_slide(data / "b.tif", 1024, 1024, seed=2)  # big enough to be killed mid-slide
    # an earlier run died holding slide a: its lease is fresh but its process is gone
    dead, now = _dead_pid(), time.time()
    lease = out / "_batch" / "leases" / "a.lease"
    lease.parent.mkdir(parents=True)
    lease.write_text(LeaseInfo(socket.gethostname(), dead, None, now, now, "old-token", "batch old").to_json())
    state = out / "_batch" / "state" / "a.json"
    state.parent.mkdir(parents=True)
    attempt = {"run": "old", "host": socket.gethostname(), "pid": dead, "started": now, "outcome": "running"}
    state.write_text(
        json.dumps({"name": "a", "slide": str(data / "a.tif"), "status": "running", "attempts": [attempt]})
    )

    killed = {}

    def kill_worker_of_b():
        b_lease = out / "_batch" / "leases" / "b.lease"
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                info = json.loads(b_lease.read_text())
            except (OSError, ValueError):
                time.sleep(0.02)
                continue
            time.sleep(0.3)  # mid-slide
            killed["pid"] = info["pid"]
            os.kill(info["pid"], signal.SIGKILL)
            return

    killer = threading.Thread(target=kill_worker_of_b, daemon=True)
    killer.start()
    rc = main(["batch", str(data), "-o", str(out), "--workers", "1", *PIPELINE_ARGS])
    killer.join()
    assert rc == 0
    st = states(out)
    a, b = st["a"], st["b"]
    assert a["status"] == "done" and done_attempts(a) == 1
    assert a["attempts"][0]["outcome"] == "interrupted"
    assert a["attempts"][1]["took_over"] == {
        "host": socket.gethostname(),
        "pid": dead,
        "reason": f"process {dead} on this host is gone",
    }
    assert b["status"] == "done" and done_attempts(b) == 1
    assert [x["outcome"] for x in b["attempts"]] == ["interrupted", "done"]
    assert b["attempts"][0]["pid"] == killed["pid"] != b["attempts"][1]["pid"]
    assert not any((out / "_batch" / "leases").glob("*.lease")), "leases are released when slides finish"


def test_batch_killed_half_way_restarts_to_the_outputs_of_an_uninterrupted_run(tmp_path):
    data = tmp_path / "data"
    names = [f"slide{i:02d}" for i in range(20)]
    for i, name in enumerate(names):
        write_slide(data / f"{name}.tif", 256 + 64 * (i % 4), 320, seed=i)
    reference, out = tmp_path / "reference", tmp_path / "out"
    done = subprocess.run(
        batch_cmd(data, "-o", reference, "--workers", "2", "-q", *PIPELINE_ARGS), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr

    run = start_batch(data, "-o", out, "--workers", "2", *PIPELINE_ARGS, log=tmp_path / "killed.log")
    deadline = time.time() + 60
    while time.time() < deadline and sum(s["status"] == "done" for s in _quiet_states(out).values()) < 8:
        time.sleep(0.05)
    os.killpg(run.pid, signal.SIGKILL)  # the batch and its workers, mid-slide, no clean-up
    run.wait()
    halfway = states(out)
    assert 8 <= sum(s["status"] == "done" for s in halfway.values()) < 20

    rc = main(["batch", str(data), "-o", str(out), "--workers", "2", "-q", *PIPELINE_ARGS])
    st = states(out)
    assert rc == 0, {n: s["error"] for n, s in st.items() if s["error"]}
    assert sorted(st) == names
    assert all(s["status"] == "done" and done_attempts(s) == 1 for s in st.values()), "each slide done exactly once"
    assert {n: store_digest(out, n) for n in names} == {n: store_digest(reference, n) for n in names}


def _quiet_states(out):
    try:
        return states(out)
    except (OSError, ValueError):
        return {}


def test_a_replacement_worker_takes_the_gpu_of_the_one_that_died(tmp_path):
    """Worker processes are pinned one per GPU; one that dies is replaced on the same GPU, not piled onto another."""
    from vimscope.runners.local import LocalExecutor, WorkerPlan
    from vimscope.runners.manifest import SlideJob
    from vimscope.runners.task import SlideTask

    def task(name):  # a manifest row with a bad value: fails at once in the worker, no pipeline needed
        return SlideTask(SlideJob(f"/x/{name}.tif", name, problem="bad row"), {}, str(tmp_path), "r")

    with LocalExecutor(WorkerPlan(2, ["6", "7"], None)) as ex:
        for name in ("a", "b"):
            ex.submit(task(name))
        outcomes = []
        while ex.pending:
            outcomes += ex.wait(30)
        assert sorted((o.name, o.status) for o in outcomes) == [("a", "failed"), ("b", "failed")]
        assert sorted(w.env["CUDA_VISIBLE_DEVICES"] for w in ex._workers) == ["6", "7"]
        victim = next(w for w in ex._workers if w.env["CUDA_VISIBLE_DEVICES"] == "7")
        os.kill(victim.process.pid, signal.SIGKILL)
        victim.process.join(10)
        for name in ("c", "d", "e"):
            ex.submit(task(name))
        while ex.pending:
            outcomes += ex.wait(30)
        assert len(outcomes) == 5 and all(o.status == "failed" for o in outcomes)
        assert sorted(w.env["CUDA_VISIBLE_DEVICES"] for w in ex._workers) == ["6", "7"]
