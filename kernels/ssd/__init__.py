"""The bidirectional SSD op (Mamba-2 form): ``naive`` (the quadratic-form spec), ``cpu`` (the chunked PyTorch
form, the CPU path), ``fwd`` / ``bwd`` (Triton kernels), ``function`` (autograd and the public ``bi_ssd``).
Nothing here imports triton until a kernel is launched."""
