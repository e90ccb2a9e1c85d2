"""vimscope's benchmarks: run from the repository root as ``python -m benchmarks.<area>.<name>``.

Areas: ``kernels`` (the scan op), ``models`` (backbones), ``pipeline`` (a slide, call to done), ``batch`` (many
slides, one or several GPUs); ``common`` holds what they share (run info, probes). ``device/`` holds the shell
scripts of a GPU-machine call; ``results/`` the latest JSON per benchmark and card. Not part of the package.
"""
