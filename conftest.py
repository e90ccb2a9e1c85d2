"""Root test configuration: runs before any test module imports a kernel.

Without a GPU, Triton kernels run in its interpreter on the CPU; the variable must be set before
``triton`` is first imported, hence here.
"""

import os


def _has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:
        return False


if not _has_cuda():
    os.environ.setdefault("TRITON_INTERPRET", "1")
