"""Kernel benchmarks: the bidirectional scan against its bound and the official kernel, launch sweeps, SASS reports."""
