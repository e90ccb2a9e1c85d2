"""Batch benchmarks: ``vimscope batch`` over many slides on one or several GPUs, local or dask.distributed."""
