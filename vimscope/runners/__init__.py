"""Batch runners (layer 4): many slides, resumable, on local processes or a dask.distributed cluster.

``manifest`` reads what to run, ``state`` and ``lease`` keep per-slide records and locks in the output folder,
``task`` runs one slide inside a worker, ``local`` and ``cluster`` execute tasks (``executors`` picks one),
``driver`` is the loop and ``report`` the summary. Names are re-exported lazily (PEP 562) so importing this
package stays cheap.
"""

from __future__ import annotations

from vimscope._lazy import lazy_exports

_LAZY = {
    "SlideJob": "vimscope.runners.manifest",
    "read_inputs": "vimscope.runners.manifest",
    "StateStore": "vimscope.runners.state",
    "SlideState": "vimscope.runners.state",
    "Lease": "vimscope.runners.lease",
    "SlideTask": "vimscope.runners.task",
    "Outcome": "vimscope.runners.task",
    "run_slide": "vimscope.runners.task",
    "LocalExecutor": "vimscope.runners.local",
    "plan_workers": "vimscope.runners.local",
    "ClusterExecutor": "vimscope.runners.cluster",
    "executor_factory": "vimscope.runners.executors",
    "parse_workers": "vimscope.runners.executors",
    "run_batch": "vimscope.runners.driver",
    "BatchResult": "vimscope.runners.driver",
}

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
