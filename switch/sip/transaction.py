"""The four transaction state machines of RFC 3261 §17 (with RFC 6026's Accepted state),
sans-I/O: fed messages and ``now``, they queue datagrams to send and events for the TU.

One ``TransactionLayer`` owns every transaction and a single timer heap: the transport asks
``get_timer()`` for the next deadline and calls ``handle_timer(now)`` then — nothing polls and
there is no call_later per retransmission.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from dataclasses import dataclass
from enum import Enum
from typing import Any

from .errors import LocalProtocolError, RemoteProtocolError
from .message import Request, Response

T1 = 0.5
T2 = 4.0
T4 = 5.0
MAGIC_COOKIE = "z9hG4bK"


class State(Enum):
    CALLING = "calling"
    TRYING = "trying"
    PROCEEDING = "proceeding"
    ACCEPTED = "accepted"
    COMPLETED = "completed"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


# -- events for the transaction user ------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ResponseReceived:
    transaction: ClientTransaction
    response: Response


@dataclass(frozen=True, slots=True)
class TransactionTimeout:
    """Timer B/F (no final response), or Timer H/L (no ACK for our final response)."""

    transaction: Transaction


@dataclass(frozen=True, slots=True)
class TransactionTerminated:
    transaction: Transaction


Event = ResponseReceived | TransactionTimeout | TransactionTerminated


class Transaction:
    kind = "?"

    def __init__(self, layer: TransactionLayer, key: tuple, request: Request, dest: Any, reliable: bool):
        self.layer = layer
        self.key = key
        self.request: Request | None = request  # dropped once only retransmissions are left
        self.method = request.method
        self.dest = dest
        self.reliable = reliable
        self.state = State.TRYING
        self._timers: dict[str, float] = {}
        self._intervals: dict[str, float] = {}
        self.user_data: Any = None  # for the transaction user (e.g. a future or a call leg)

    def get_timer(self) -> float | None:
        return min(self._timers.values()) if self._timers else None

    def _set(self, name: str, now: float, delay: float) -> None:
        self._timers[name] = now + delay
        self._intervals[name] = delay
        self.layer._schedule(self)

    def _cancel(self, *names: str) -> None:
        for n in names:
            self._timers.pop(n, None)
        # the layer's heap holds only the earliest deadline: the next one must be pushed now,
        # or a later timer (Timer L behind a cancelled G) is never fired and the transaction leaks
        self.layer._schedule(self)

    def handle_timer(self, now: float) -> None:
        for name, deadline in sorted(self._timers.items(), key=lambda kv: kv[1]):
            if deadline <= now and name in self._timers:
                del self._timers[name]
                self._fire(name, now)
                if self.state is State.TERMINATED:
                    return

    def _fire(self, name: str, now: float) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _send(self, data: bytes) -> None:
        self.layer._outgoing.append((data, self.dest))

    def _shrink(self) -> None:
        """From here on only bytes and timers matter (absorbing retransmissions for up to 32 s):
        the parsed messages go, so thousands of waiting transactions are not thousands of
        object graphs for the garbage collector to walk."""
        self.request = None
        self.user_data = None

    def _terminate(self) -> None:
        if self.state is State.TERMINATED:
            return
        self.state = State.TERMINATED
        self._timers.clear()
        self.layer._remove(self)
        self.layer._events.append(TransactionTerminated(self))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.method} {self.state.value} {self.key}>"


# -- client side ---------------------------------------------------------------------------------
class ClientTransaction(Transaction):
    def start(self, now: float) -> None:
        raise NotImplementedError

    def receive_response(self, response: Response, now: float) -> None:
        raise NotImplementedError

    def _deliver(self, response: Response) -> None:
        self.layer._events.append(ResponseReceived(self, response))


class ClientInviteTransaction(ClientTransaction):
    kind = "ict"

    def start(self, now: float) -> None:
        self.state = State.CALLING
        self._data = self.request.serialize()
        self._send(self._data)
        if not self.reliable:
            self._set("A", now, self.layer.t1)
        self._set("B", now, 64 * self.layer.t1)

    def _fire(self, name: str, now: float) -> None:
        if name == "A" and self.state is State.CALLING:
            self._send(self._data)
            self._set("A", now, self._intervals["A"] * 2)
        elif name == "B" and self.state is State.CALLING:
            self.layer._events.append(TransactionTimeout(self))
            self._terminate()
        elif name in ("D", "M"):
            self._terminate()

    def receive_response(self, response: Response, now: float) -> None:
        status = response.status
        if self.state in (State.CALLING, State.PROCEEDING):
            if status < 200:
                self.state = State.PROCEEDING
                self._cancel("A", "B")
                self._deliver(response)
            elif status < 300:
                self.state = State.ACCEPTED
                self._cancel("A", "B")
                self._set("M", now, 64 * self.layer.t1)
                self._deliver(response)
                self.request = None  # the TU keeps its own copy to ACK retransmitted 2xx
            else:
                self.state = State.COMPLETED
                self._cancel("A", "B")
                assert self.request is not None
                self._ack = make_ack_for_error(self.request, response).serialize()
                self._send(self._ack)
                self._set("D", now, 0.0 if self.reliable else 32.0)
                self._deliver(response)
                self.request = None
        elif self.state is State.ACCEPTED and 200 <= status < 300:
            self._deliver(response)  # a retransmitted 2xx: the TU acks it again
        elif self.state is State.COMPLETED and status >= 300:
            self._send(self._ack)


class ClientNonInviteTransaction(ClientTransaction):
    kind = "nict"

    def start(self, now: float) -> None:
        self.state = State.TRYING
        self._data = self.request.serialize()
        self._send(self._data)
        if not self.reliable:
            self._set("E", now, self.layer.t1)
        self._set("F", now, 64 * self.layer.t1)

    def _fire(self, name: str, now: float) -> None:
        if name == "E" and self.state in (State.TRYING, State.PROCEEDING):
            self._send(self._data)
            nxt = self.layer.t2 if self.state is State.PROCEEDING else min(2 * self._intervals["E"], self.layer.t2)
            self._set("E", now, nxt)
        elif name == "F" and self.state in (State.TRYING, State.PROCEEDING):
            self.layer._events.append(TransactionTimeout(self))
            self._terminate()
        elif name == "K":
            self._terminate()

    def receive_response(self, response: Response, now: float) -> None:
        if self.state not in (State.TRYING, State.PROCEEDING):
            return
        if response.status < 200:
            self.state = State.PROCEEDING
            self._deliver(response)
        else:
            self.state = State.COMPLETED
            self._cancel("E", "F")
            self._set("K", now, 0.0 if self.reliable else self.layer.t4)
            self._deliver(response)
            self.request = None


# -- server side ---------------------------------------------------------------------------------
class ServerTransaction(Transaction):
    last_response: Response | None = None

    def send_response(self, response: Response, now: float) -> None:
        raise NotImplementedError

    def receive_request(self, request: Request, now: float) -> None:
        """A retransmission of the request (or an ACK for an INVITE's non-2xx answer)."""
        raise NotImplementedError


class ServerInviteTransaction(ServerTransaction):
    kind = "ist"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.state = State.PROCEEDING
        self._data: bytes | None = None
        self.acked = False
        assert self.request is not None
        self.call_key = (self.request.call_id, self.request.cseq.seq)  # how the ACK of a 2xx finds it

    def send_response(self, response: Response, now: float) -> None:
        if self.state not in (State.PROCEEDING, State.ACCEPTED):
            raise LocalProtocolError(f"cannot answer an INVITE transaction in state {self.state.value}")
        if self.state is State.ACCEPTED:
            if 200 <= response.status < 300:  # TU retransmitting its 2xx itself
                self._send(response.serialize())
            return
        self.last_response = response
        self._data = response.serialize()
        self._send(self._data)
        status = response.status
        if status < 200:
            return
        if status < 300:
            # RFC 6026: stay to absorb INVITE retransmissions; retransmit the 2xx (§13.3.1.4)
            # until the core hands us the ACK.
            self.state = State.ACCEPTED
            if not self.reliable:
                self._set("G2xx", now, self.layer.t1)
            self._set("L", now, 64 * self.layer.t1)
            self.layer._accepted[self.call_key] = self
        else:
            self.state = State.COMPLETED
            if not self.reliable:
                self._set("G", now, self.layer.t1)
            self._set("H", now, 64 * self.layer.t1)

    def receive_request(self, request: Request, now: float) -> None:
        if request.method == "ACK":
            if self.state is State.COMPLETED:
                self.state = State.CONFIRMED
                self._cancel("G", "H")
                self._set("I", now, 0.0 if self.reliable else self.layer.t4)
                self.last_response = None
                self._shrink()
            return
        if self.state in (State.PROCEEDING, State.COMPLETED, State.ACCEPTED) and self._data:
            self._send(self._data)

    def ack_2xx(self, now: float) -> None:
        """The ACK for our 2xx arrived (it is its own transaction: matched by the core)."""
        if self.state is State.ACCEPTED and not self.acked:
            self.acked = True
            self._cancel("G2xx")
            self.last_response = None
            self._shrink()  # acknowledged: Timer L only absorbs retransmissions now

    def _fire(self, name: str, now: float) -> None:
        if name == "G" and self.state is State.COMPLETED and self._data:
            self._send(self._data)
            self._set("G", now, min(2 * self._intervals["G"], self.layer.t2))
        elif name == "G2xx" and self.state is State.ACCEPTED and self._data and not self.acked:
            self._send(self._data)
            self._set("G2xx", now, min(2 * self._intervals["G2xx"], self.layer.t2))
        elif name == "H" and self.state is State.COMPLETED:
            self.layer._events.append(TransactionTimeout(self))
            self._terminate()
        elif name == "L":
            if not self.acked:
                self.layer._events.append(TransactionTimeout(self))
            self._terminate()
        elif name == "I":
            self._terminate()


class ServerNonInviteTransaction(ServerTransaction):
    kind = "nist"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.state = State.TRYING
        self._data: bytes | None = None

    def send_response(self, response: Response, now: float) -> None:
        if self.state not in (State.TRYING, State.PROCEEDING):
            raise LocalProtocolError(f"cannot answer a transaction in state {self.state.value}")
        self.last_response = response
        self._data = response.serialize()
        self._send(self._data)
        if response.status < 200:
            self.state = State.PROCEEDING
        else:
            self.state = State.COMPLETED
            self.last_response = None
            self._shrink()  # the transaction user is done too: nothing is kept alive for Timer J
            self._set("J", now, 0.0 if self.reliable else 64 * self.layer.t1)

    def receive_request(self, request: Request, now: float) -> None:
        if self.state in (State.PROCEEDING, State.COMPLETED) and self._data:
            self._send(self._data)

    def _fire(self, name: str, now: float) -> None:
        if name == "J":
            self._terminate()


# -- keys ------------------------------------------------------------------------------------------
def server_key(request: Request, source: Any = None) -> tuple:
    """Matching key of §17.2.3, with the RFC 2543 fallback for branches without the cookie.

    The source address is part of the key too: two clients that happen to pick the same branch
    and sent-by (RFC 4475's messages do) must not answer each other's transactions.
    """
    via = request.top_via
    method = "INVITE" if request.method == "ACK" else request.method
    branch = via.branch
    if branch and branch.startswith(MAGIC_COOKIE) and len(branch) > len(MAGIC_COOKIE):
        return (branch, via.sent_by.lower(), method, source)
    cseq = request.cseq
    return (
        "rfc2543", request.call_id, request.from_.tag or "", cseq.seq, method,
        via.sent_by.lower(), source,
    )


def client_key(msg: Request | Response) -> tuple:
    branch = msg.top_via.branch or ""
    return (branch, msg.cseq.method if msg.cseq.method != "ACK" else "INVITE")


def make_ack_for_error(request: Request, response: Response) -> Request:
    """ACK for a non-2xx final response (§17.1.1.3): same branch, the response's To."""
    headers = [("Via", request.header_values("Via")[0])]
    headers += [("Route", v) for v in request.header_values("Route")]
    headers += [
        ("Max-Forwards", "70"),
        ("From", request.header("From") or ""),
        ("To", response.header("To") or ""),
        ("Call-ID", request.call_id),
        ("CSeq", f"{request.cseq.seq} ACK"),
    ]
    return Request("ACK", request.uri, headers)


# -- the layer -------------------------------------------------------------------------------------
class TransactionLayer:
    def __init__(self, t1: float = T1, t2: float = T2, t4: float = T4) -> None:
        self.t1, self.t2, self.t4 = t1, t2, t4
        self.clients: dict[tuple, ClientTransaction] = {}
        self.servers: dict[tuple, ServerTransaction] = {}
        self._branches: dict[str, int] = {}  # client transactions per branch (INVITE and its CANCEL share one)
        self._accepted: dict[tuple[str, int], ServerInviteTransaction] = {}
        self._heap: list[tuple[float, int, Transaction]] = []
        self._counter = itertools.count()
        self._outgoing: list[tuple[bytes, Any]] = []
        self._events: deque[Event] = deque()

    # --- TU interface
    def send_request(self, request: Request, dest: Any, *, reliable: bool, now: float) -> ClientTransaction:
        if request.method == "ACK":
            raise LocalProtocolError("ACK is not sent in a client transaction")
        key = client_key(request)
        if key in self.clients:
            raise LocalProtocolError(f"duplicate client transaction {key}")
        cls = ClientInviteTransaction if request.method == "INVITE" else ClientNonInviteTransaction
        txn = cls(self, key, request, dest, reliable)
        self.clients[key] = txn
        self._branches[key[0]] = self._branches.get(key[0], 0) + 1
        txn.start(now)
        return txn

    def has_client_branch(self, branch: str) -> bool:
        """Whether a response with this top-Via branch answers one of our requests: a cheap
        check made before parsing, so that solicited responses are never rate-limited."""
        return branch in self._branches

    def receive_request(
        self, request: Request, source: Any, *, reliable: bool, now: float
    ) -> tuple[ServerTransaction | None, bool]:
        """Match or create the server transaction.

        Returns (transaction, is_new). A retransmission or an ACK absorbed by its INVITE
        transaction gives (txn, False); an ACK matching nothing gives (None, False): the core
        matches it to a dialog (an ACK for a 2xx).
        """
        key = server_key(request, getattr(source, "remote", source))
        txn = self.servers.get(key)
        if txn is not None:
            if request.method == "ACK" and isinstance(txn, ServerInviteTransaction) and txn.state is State.ACCEPTED:
                return None, False  # ACK for our 2xx with the INVITE's branch (RFC 2543 style)
            txn.receive_request(request, now)
            return txn, False
        if request.method == "ACK":
            return None, False
        cls = ServerInviteTransaction if request.method == "INVITE" else ServerNonInviteTransaction
        txn = cls(self, key, request, source, reliable)
        self.servers[key] = txn
        return txn, True

    def receive_response(self, response: Response, now: float) -> ClientTransaction | None:
        """Hand a response to its client transaction; None when nothing matches (drop it)."""
        try:
            key = client_key(response)
        except RemoteProtocolError:
            return None
        txn = self.clients.get(key)
        if txn is None:
            return None
        txn.receive_response(response, now)
        return txn

    def send_response(self, txn: ServerTransaction, response: Response, now: float) -> None:
        txn.send_response(response, now)

    def find_invite_for_cancel(self, cancel: Request, source: Any = None) -> ServerInviteTransaction | None:
        key = server_key(cancel, getattr(source, "remote", source))
        ikey = (*key[:2], "INVITE", key[3]) if key[0] != "rfc2543" else (*key[:4], "INVITE", *key[5:])
        txn = self.servers.get(ikey)
        return txn if isinstance(txn, ServerInviteTransaction) else None

    def match_2xx_ack(self, ack: Request, now: float) -> ServerInviteTransaction | None:
        txn = self._accepted.get((ack.call_id, ack.cseq.seq))
        if txn is not None:
            txn.ack_2xx(now)
        return txn

    # --- sans-I/O plumbing
    def datagrams_to_send(self) -> list[tuple[bytes, Any]]:
        out, self._outgoing = self._outgoing, []
        return out

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        heap = self._heap
        while heap:
            deadline, _, txn = heap[0]
            if txn.get_timer() == deadline:
                return deadline
            heapq.heappop(heap)  # stale entry: that timer was cancelled or re-armed
        return None

    def handle_timer(self, now: float) -> None:
        heap = self._heap
        while heap and heap[0][0] <= now:
            deadline, _, txn = heapq.heappop(heap)
            if txn.get_timer() != deadline:
                continue
            txn.handle_timer(now)
            if txn.state is not State.TERMINATED:
                self._schedule(txn)  # its next deadline (a timer that fired may have been the earliest)

    def _schedule(self, txn: Transaction) -> None:
        deadline = txn.get_timer()
        if deadline is not None:
            heapq.heappush(self._heap, (deadline, next(self._counter), txn))

    def _remove(self, txn: Transaction) -> None:
        table = self.clients if isinstance(txn, ClientTransaction) else self.servers
        if table.get(txn.key) is txn:
            del table[txn.key]
            if table is self.clients:
                left = self._branches.get(txn.key[0], 1) - 1
                if left > 0:
                    self._branches[txn.key[0]] = left
                else:
                    self._branches.pop(txn.key[0], None)
        if isinstance(txn, ServerInviteTransaction) and self._accepted.get(txn.call_key) is txn:
            del self._accepted[txn.call_key]

    def __len__(self) -> int:
        return len(self.clients) + len(self.servers)
