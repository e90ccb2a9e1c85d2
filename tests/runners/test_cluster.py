"""`vimscope batch --scheduler` on a dask.distributed LocalCluster of 2 worker processes."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import pytest

from tests.conftest import shared_path
from tests.runners.conftest import PIPELINE_ARGS, done_attempts, states, store_digest, write_corrupt, write_slide
from vimscope.cli.main import main


@pytest.fixture(scope="module")
def cluster():
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as c:
        yield c


def _kill_holder(lease, after_s: float, killed: dict, timeout: float = 60) -> None:
    """Kill the worker process that holds ``lease`` ``after_s`` seconds after it took it (mid-slide)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            info = json.loads(lease.read_text())
        except (OSError, ValueError):
            time.sleep(0.02)
            continue
        time.sleep(after_s)
        killed["pid"] = info["pid"]
        os.kill(info["pid"], signal.SIGKILL)
        return


def test_cluster_batch_records_the_corrupt_slide_survives_a_killed_worker_and_reruns_nothing(cluster, tmp_path, capsys):
    data, out = tmp_path / "data", tmp_path / "out"
    data.mkdir()
    (data / "aerial.tif").symlink_to(shared_path("data/aerial/cogeo.tif"))  # a real JPEG COG with masks
    for i in range(3):
        write_slide(data / f"gen{i}.tif", seed=i)
    write_slide(data / "big.tif", 1024, 1024, seed=9)
    write_corrupt(data / "corrupt.tif")

    killed: dict = {}
    killer = threading.Thread(
        target=_kill_holder, args=(out / "_batch" / "leases" / "big.lease", 0.3, killed), daemon=True
    )
    killer.start()
    args = ["batch", str(data), "-o", str(out), "--scheduler", cluster.scheduler_address, *PIPELINE_ARGS]
    rc = main(args)
    killer.join()
    err = capsys.readouterr().err
    assert rc == 12, err
    st = states(out)
    assert {n: s["status"] for n, s in st.items()} == {
        "aerial": "done",
        "gen0": "done",
        "gen1": "done",
        "gen2": "done",
        "big": "done",
        "corrupt": "failed",
    }
    assert st["corrupt"]["error"].endswith("corrupt.tif: damaged TIFF: no readable image directory")
    assert "corrupt: FAILED:" in err
    assert st["aerial"]["summary"]["out_shape"] == [1024, 1024]
    big = st["big"]
    assert [a["outcome"] for a in big["attempts"]] == ["interrupted", "done"], big["attempts"]
    assert big["attempts"][0]["pid"] == killed["pid"] != big["attempts"][1]["pid"]
    assert big["attempts"][1]["took_over"]["reason"] == f"process {killed['pid']} on this host is gone"
    assert all(done_attempts(s) == 1 for n, s in st.items() if n != "corrupt")
    report = json.loads((out / "report.json").read_text())
    assert report["run"]["execution"].startswith("dask.distributed at tcp://")
    assert report["failures"] == [
        {
            "name": "corrupt",
            "slide": str(data / "corrupt.tif"),
            "error": st["corrupt"]["error"],
            "type": "CorruptSlideError",
        }
    ]

    # run again: nothing is recomputed
    done = [n for n in st if n != "corrupt"]
    before = {n: store_digest(out, n) for n in done}
    assert main(args) == 12
    again = states(out)
    assert {n: s["attempts"] for n, s in again.items()} == {n: s["attempts"] for n, s in st.items()}
    assert {n: store_digest(out, n) for n in done} == before
    assert json.loads((out / "report.json").read_text())["this_run"] == {"skipped": 6}
    # the workers that ran slides stopped dask's stack sampler (a CPython 3.11 deadlock: cluster._stop_stack_sampling)
    from distributed import Client

    with Client(cluster.scheduler_address) as client:
        sampling = client.run(lambda dask_worker: dask_worker.periodic_callbacks["profile"].is_running())
    assert sampling and not all(sampling.values()), sampling  # (a worker restarted after the kill may have run none)


def test_cluster_whose_workers_do_not_see_the_output_folder_is_refused(tmp_path, monkeypatch, capsys):
    """A worker that mounts the share elsewhere: the probe finds it before any slide runs."""
    from distributed import LocalCluster

    import vimscope.runners.cluster as cluster_mod

    real_probe = cluster_mod.probe_worker
    elsewhere = tmp_path / "elsewhere"

    def probe_with_another_mount(out_root, token_file, token, inputs):
        moved = str(elsewhere)
        return real_probe(
            out_root.replace(str(tmp_path), moved), token_file.replace(str(tmp_path), moved), token, inputs
        )

    monkeypatch.setattr(cluster_mod, "probe_worker", probe_with_another_mount)
    write_slide(tmp_path / "data" / "s.tif")
    with LocalCluster(n_workers=1, processes=False, dashboard_address=None) as c:
        rc = main(["batch", str(tmp_path / "data"), "-o", str(tmp_path / "out"), "--scheduler", c.scheduler_address])
    err = capsys.readouterr().err
    assert rc == 13
    assert "cluster mode needs the inputs and the output folder on a filesystem every worker sees" in err
    assert f"does not see the output folder {tmp_path / 'out'}" in err
    assert json.loads((tmp_path / "out" / "_batch" / "state" / "s.json").read_text())["status"] == "pending"


def test_missing_scheduler_file_is_one_clear_line(tmp_path, capsys):
    write_slide(tmp_path / "s.tif")
    rc = main(["batch", str(tmp_path / "s.tif"), "-o", str(tmp_path / "out"), "--scheduler-file", "/nope.json"])
    assert rc == 13
    assert "scheduler file not found: /nope.json" in capsys.readouterr().err
