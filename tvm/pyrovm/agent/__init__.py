"""The in-sandbox agent: stdlib-only Python that supervises the user's program.

It runs inside every sandbox, whatever the driver (namespace, gVisor, QEMU,
Firecracker), and speaks :mod:`protocol` over any byte stream. The host starts
it as ``python3 -I -S -B -c 'import sys; sys.path.insert(0, "/.tvm"); ...'``
with this directory mounted read-only at ``/.tvm/tvm_agent``.
"""
