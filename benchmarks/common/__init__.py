"""What the benchmarks share: where a run ran (``runinfo``) and what it measures beside the work (``probes``)."""
