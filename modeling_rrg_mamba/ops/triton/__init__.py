"""Triton kernels of the multi-route selective scan and its causal convolution (CUDA, no build step).

Each file holds a kernel, its launcher, its autograd wrapper and its plain-PyTorch reference side by side. The modules
import ``triton`` at the top: import them only where it is installed (it ships with PyTorch's CUDA wheels);
:mod:`..multi_route_scan` does that lazily. On a CPU the kernels run under Triton's interpreter
(``TRITON_INTERPRET=1`` set before the import), which is how the test suite checks them without a GPU.
"""
