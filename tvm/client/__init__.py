r"""``tvm.client``: the Python SDK for TVM's native API, blocking and asyncio::

    from tvm.client import Client

    with Client("http://127.0.0.1:8000") as tvm:
        print(tvm.execute("python", "print(6 * 7)").run.stdout)        # 42
        with tvm.sandboxes.create() as sbx:                            # killed at the end
            sbx.files.write("data.txt", "hello")
            print(sbx.commands.run("wc -c < data.txt").stdout)         # 5
            sbx.run_code("x = 41")
            print(sbx.run_code("x + 1").text)                          # 42
            pid = sbx.commands.run("read a; echo got $a", background=True, stdin="").pid
            with sbx.commands.connect(pid) as proc:                    # a WebSocket
                proc.send_stdin("it\n")
                print([e.data for e in proc if e.type == "stdout"])    # ['got it\n']

:class:`AsyncClient` has the same methods as coroutines (``async with``). Both
drive the same operations (:mod:`tvm.client.ops`). Results are typed models
(:mod:`tvm.api`, :mod:`tvm.live_api`); a program that fails is data on its
result; TVM's errors are raised from :mod:`tvm.errors` (``InvalidRequest``,
``NotFound``, ``CapacityError`` with ``retry_after``, ...).
"""

from __future__ import annotations

from tvm.client.aio import AsyncClient
from tvm.client.socket import CommandEvent
from tvm.client.sync import Client

__all__ = ["AsyncClient", "Client", "CommandEvent"]
