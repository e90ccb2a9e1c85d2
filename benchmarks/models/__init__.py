"""Backbone benchmarks: vim_tiny against DeiT-Tiny (flash and eager attention), images/s and peak memory."""
