"""What the transports and the SIP core share: the flow a message came on or goes out on."""

from __future__ import annotations

from dataclasses import dataclass

Address = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Flow:
    """One path to a peer: transport, remote address, our local address, and for streams the
    connection (so a response or a request to a phone behind NAT reuses its connection)."""

    transport: str  # "udp" | "tcp" | "tls"
    remote: Address
    local: Address
    conn_id: int = 0

    @property
    def reliable(self) -> bool:
        return self.transport != "udp"

    def __str__(self) -> str:
        conn = f"#{self.conn_id}" if self.conn_id else ""
        return f"{self.transport}:{self.remote[0]}:{self.remote[1]}{conn}"
