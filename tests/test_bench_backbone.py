"""The pure parts of benchmarks.models.backbone and its budget and report modules (no timm, no GPU): kernel
categories, goals, the oom row."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    from benchmarks.models import backbone

    return backbone


@pytest.fixture(scope="module")
def kernels():
    from benchmarks.models import backbone_budget

    return backbone_budget


@pytest.fixture(scope="module")
def report():
    from benchmarks.models import backbone_report

    return backbone_report


SCAN = frozenset({"_scan_fwd_kernel", "_conv_xproj_fwd_kernel"})


def test_scan_kernel_names_come_from_the_kernel_sources(kernels):
    names = kernels.scan_kernel_names()
    assert "_scan_fwd_kernel" in names and all(n.endswith("_kernel") for n in names)


@pytest.mark.parametrize(
    "name, category",
    [
        ("_scan_fwd_kernel", "scan"),
        ("_conv_xproj_fwd_kernel", "scan"),
        ("nvjet_tst_128x64_64x8_1x1_v_bz_coopA_TNT", "gemm"),
        ("sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64_warpgroupsize1x1x1_execute_cublas", "gemm"),
        ("void cutlass::Kernel2<cutlass_80_wmma_tensorop_bf16_s161616gemm_bf16_16x16_128x1_tn_align8>(Params)", "gemm"),
        ("aten::mm", "gemm"),
        ("aten::mkldnn_convolution", "gemm"),
        (
            "void at::native::vectorized_elementwise_kernel<4, at::native::direct_copy_kernel_cuda("
            "at::TensorIteratorBase&)::{lambda()#3}, std::array<char*, 2ul> >(int, T, T)",
            "cast_copy",
        ),
        ("void at::native::(anonymous namespace)::CatArrayBatchedCopy<float, unsigned int, 3, 128, 1>(T)", "cast_copy"),
        ("Memset (Device)", "cast_copy"),
        ("aten::_to_copy", "cast_copy"),
        (
            "void at::native::reduce_kernel<512, 1, at::native::ReduceOp<float, at::native::MeanOps<float, float, "
            "float, float>, unsigned int, float, 4, 4> >(T)",
            "norm_residual",
        ),
        (
            "void at::native::vectorized_elementwise_kernel<4, at::native::CUDAFunctor_add<float>, T>(int, T, T)",
            "norm_residual",
        ),
        (
            "void at::native::vectorized_elementwise_kernel<4, at::native::rsqrt_kernel_cuda(T)::{lambda()#1}>",
            "norm_residual",
        ),
        ("aten::add", "norm_residual"),
        (
            "void pytorch_flash::flash_fwd_kernel<Flash_fwd_kernel_traits<64, 128, 128, 4>>(Flash_fwd_params)",
            "attention",
        ),
        ("void at::native::vectorized_elementwise_kernel<4, at::native::exp_kernel_cuda(T)>", "other"),
        ("void at::native::constant_pad_nd_padded_kernel(T)", "other"),
    ],
)
def test_categorize(kernels, name, category):
    assert kernels.categorize(name, SCAN) == category


def test_budget_sums_categories_to_the_kernel_total(kernels):
    rows = [
        {"name": "_scan_fwd_kernel", "ms": 3.0, "count": 1},
        {"name": "nvjet_tst_x", "ms": 1.0, "count": 3},
        {"name": "aten::_to_copy", "ms": 1.0, "count": 2},
    ]
    out = kernels.budget(rows, frozenset({"_scan_fwd_kernel"}), top=2)
    assert out["kernel_ms"] == pytest.approx(5.0) and out["kernel_launches"] == 6
    assert out["categories"]["scan"]["pct"] == pytest.approx(60.0)
    assert sum(c["ms"] for c in out["categories"].values()) == pytest.approx(5.0)
    assert [k["name"] for k in out["top"]] == ["_scan_fwd_kernel", "nvjet_tst_x"]


def _row(model, size, images_per_s, peak):
    return {"model": model, "size": size, "batch": 8, "status": "ok", "images_per_s": images_per_s, "peak_gib": peak}


def test_ratios_check_the_goals(report):
    rows = [
        _row("vim_tiny", 1024, 1100.0, 1.5),
        _row("deit_tiny_flash", 1024, 1000.0, 1.6),
        _row("vim_tiny", 1248, 600.0, 2.0),
        _row("deit_tiny_flash", 1248, 619.0, 2.5),
        _row("vim_tiny", 2048, 250.0, 2.0),
        _row("deit_tiny_flash", 2048, 120.0, 3.0),
        _row("vim_tiny", 4096, 80.0, 3.0),
        _row("deit_tiny_flash", 4096, 12.0, 4.0),
        {"model": "deit_tiny_eager", "size": 4096, "batch": 8, "status": "oom"},
    ]
    summary = report.ratios(rows)
    assert summary["per_size"][1248]["vim_over_official_quoted"] == pytest.approx(600 / 189)
    assert summary["goals"] == {
        "vim_1x_deit_flash_at_1024": True,
        "vim_2x_deit_flash_at_2048": True,
        "vim_6x_deit_flash_at_4096": True,
        "3x_official_vim_at_1248 (quoted)": True,
        "peak_memory_not_above_deit_flash": True,
    }
    rows[6] = _row("vim_tiny", 4096, 30.0, 5.0)
    goals = report.ratios(rows)["goals"]
    assert not goals["vim_6x_deit_flash_at_4096"] and not goals["peak_memory_not_above_deit_flash"]
    assert goals["vim_2x_deit_flash_at_2048"], "one missed goal leaves the others"
    assert report.ratios(rows[2:])["goals"]["vim_1x_deit_flash_at_1024"] is None, "no row, no verdict"
    table = report.markdown(rows, report.ratios(rows), [])
    assert "| 4096 | 8 | deit_tiny_eager |  |  |  |  | oom |" in table


def test_out_of_memory_is_a_row_not_a_crash(bench):
    class Exhausted(torch.nn.Module):
        def forward(self, x):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 206.00 GiB")

    args = SimpleNamespace(target_s=0.01, min_reps=1, max_reps=1)
    row = bench.run_case("deit_tiny_eager", Exhausted(), 32, 1, torch.device("cpu"), "fp32", args)
    assert row["status"] == "oom" and "images_per_s" not in row
    ok = bench.run_case("vim_tiny", torch.nn.Identity(), 32, 2, torch.device("cpu"), "fp32", args)
    assert ok["status"] == "ok" and ok["images_per_s"] > 0 and ok["tokens"] == 5


def test_card_slug_and_batches(bench):
    assert bench.card_slug("NVIDIA H100 80GB HBM3") == "h100"
    assert bench.card_slug("NVIDIA H200") == "h200"
    assert bench.card_slug("cpu") == "cpu"
    args = SimpleNamespace(batch=None)
    assert bench.batch_for(1248, args) == 64 and bench.batch_for(4096, args) == 8
    assert bench.batch_for(768, args) == 128  # 2305 tokens: a power of two near 400k tokens
    assert bench.batch_for(768, SimpleNamespace(batch=2)) == 2
