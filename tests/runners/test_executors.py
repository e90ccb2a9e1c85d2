"""The batch executor is chosen in ``vimscope.runners`` (the CLI passes the user's choice through)."""

from __future__ import annotations

import pytest

from vimscope.errors import ConfigError
from vimscope.runners import executor_factory, parse_workers


def test_workers_parse_local_or_a_count():
    assert parse_workers("local") is None and parse_workers("3") == 3
    for bad in ("0", "many"):
        with pytest.raises(ConfigError, match="--workers"):
            parse_workers(bad)


def test_a_scheduler_picks_the_cluster_and_local_processes_follow_the_count(monkeypatch):
    import vimscope.runners.cluster as cluster
    import vimscope.runners.local as local

    made = {}
    monkeypatch.setattr(cluster, "ClusterExecutor", lambda *a, **k: made.setdefault("cluster", (a, k)))
    monkeypatch.setattr(local, "LocalExecutor", lambda plan, **k: made.setdefault("local", (plan, k)))
    executor_factory(scheduler="tcp://h:1", retries=5)(4)
    assert made["cluster"] == (("tcp://h:1",), {"scheduler_file": None, "retries": 5})
    executor_factory(workers="3", threads=2)(2)  # 3 processes asked, 2 slides: 2 processes
    plan, kwargs = made["local"]
    assert plan.count == 2 and plan.torch_threads == 2 and kwargs == {"retries": 2}
    with pytest.raises(ConfigError, match="not both"):
        executor_factory(scheduler="tcp://h:1", scheduler_file="f.json")
