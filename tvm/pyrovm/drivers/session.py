"""The host's side of the agent conversation, over any :class:`~.channel.Channel`.

:class:`AgentSession` owns the protocol: framing, one request at a time, typed
replies (:mod:`.messages`), and every channel failure mapped to
:class:`~tvm.errors.AgentError`. Two ways to ask:

* ``await session.call(request, ReplyType)`` — one request, one reply;
* a streamed exchange, for requests whose answer is a stream of
  :class:`~.messages.Event` frames ending in the reply::

      async with session.stream(request, StageReply) as exchange:
          async for event in exchange:           # until the reply arrives
              ...
              await exchange.send(Stdin(b"more"))  # any time while it is open
      result = exchange.reply

  Leaving the block before the reply arrived leaves the conversation out of
  step: the session is then closed (every later request fails), as a
  cancelled call would leave it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from types import TracebackType
from typing import Generic, TypeVar

from tvm.errors import AgentError
from tvm.pyrovm.agent import protocol
from tvm.pyrovm.drivers.channel import Channel
from tvm.pyrovm.drivers.messages import (
    Error,
    Event,
    Hello,
    Message,
    Shutdown,
    from_wire,
    to_wire,
)

R = TypeVar("R", bound=Message)
T = TypeVar("T")
CHANNEL_ERRORS = (OSError, EOFError, asyncio.IncompleteReadError, protocol.ProtocolError)


class AgentSession:
    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self._turn = asyncio.Lock()  # one open request at a time
        self._writing = asyncio.Lock()  # frames of concurrent senders never interleave
        self.broken: str | None = None

    async def _send(self, message: Message) -> None:
        async with self._writing:
            await self.channel.send(protocol.encode(to_wire(message)))

    async def _read(self) -> Message:
        header = await self.channel.recv(4)
        frame = protocol.decode_body(await self.channel.recv(protocol.decode_header(header)))
        try:
            return from_wire(frame)
        except (ValueError, TypeError) as exc:
            raise protocol.ProtocolError(str(exc)) from exc

    async def hello(self) -> Hello:
        """The agent's first frame (it sends it unasked)."""
        try:
            hello = await self._read()
        except CHANNEL_ERRORS as exc:
            raise AgentError(f"agent did not start: {exc}") from exc
        if not isinstance(hello, Hello) or hello.protocol != protocol.PROTOCOL_VERSION:
            expected = protocol.PROTOCOL_VERSION
            raise AgentError(f"agent speaks {hello!r}, expected protocol {expected}")
        return hello

    async def call(self, request: Message, reply: type[R]) -> R:
        """Send ``request``, wait for its reply (events before it are dropped)."""
        async with self.stream(request, reply) as exchange:
            async for _ in exchange:
                pass
        return exchange.reply

    def stream(self, request: Message, reply: type[R]) -> Exchange[R]:
        """An exchange that sends ``request`` when entered; see the module docs."""
        return Exchange(self, request, reply)

    async def shutdown(self, timeout: float = 0.5) -> None:
        """Ask the agent to exit (no reply); best effort, for a VM's clean stop."""
        if self.broken is None and not self._turn.locked():
            try:
                await asyncio.wait_for(self._send(Shutdown()), timeout)
            except (TimeoutError, *CHANNEL_ERRORS):
                pass
        self.broken = self.broken or "shut down"


class Exchange(Generic[R]):
    """One open request: iterate its events, send frames, then read ``reply``."""

    def __init__(self, session: AgentSession, request: Message, reply: type[R]) -> None:
        self.session = session
        self.request = request
        self.reply_type = reply
        self._reply: R | None = None
        self._answered = False  # a reply or a refusal arrived: the conversation is in step

    @property
    def reply(self) -> R:
        if self._reply is None:
            raise AgentError(f"no reply to {self.request.TYPE} yet")
        return self._reply

    async def __aenter__(self) -> Exchange[R]:
        session = self.session
        await session._turn.acquire()
        try:
            if session.broken is not None:
                raise AgentError(f"agent channel unusable ({session.broken})")
            await self._guard(session._send(self.request))
        except BaseException:
            session._turn.release()
            raise
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if not self._answered and self.session.broken is None:
            self.session.broken = f"{self.request.TYPE} left unanswered"
        self.session._turn.release()

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._events()

    async def _events(self) -> AsyncIterator[Event]:
        while not self._answered:
            message = await self._guard(self.session._read())
            if isinstance(message, Event):
                yield message
                continue
            self._answered = True
            if isinstance(message, Error):
                raise AgentError(f"agent refused {self.request.TYPE}: {message.message}")
            if not isinstance(message, self.reply_type):
                self.session.broken = f"answered {self.request.TYPE} with {message.TYPE}"
                raise AgentError(f"agent answered {self.request.TYPE} with {message!r}")
            self._reply = message

    async def send(self, message: Message) -> None:
        """Another frame for the open request (``Stdin``, ``Signal``)."""
        await self._guard(self.session._send(message))

    async def _guard(self, step: Awaitable[T]) -> T:
        try:
            return await step
        except CHANNEL_ERRORS as exc:
            self.session.broken = str(exc) or type(exc).__name__
            raise AgentError(f"agent channel failed during {self.request.TYPE}: {exc}") from exc
