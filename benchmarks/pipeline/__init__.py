"""Pipeline benchmarks: one slide through ``vimscope segment``, its ceilings, host work and determinism."""
