"""The emulated network for validating the latency simulator: a user-space delay relay and a
pair of network namespaces joined by a rate-limited veth.

Why user space: this kernel has no ``netem``, so the one-way delay the simulator assumes comes
from :class:`Relay`, a TCP relay that holds every chunk it reads for a fixed ``delay_s`` before
writing it on, in both directions. Bandwidth comes from the kernel: ``tc qdisc ... tbf`` on each
end of a veth pair (:func:`netns_pair`), so packets are shaped with their real TCP/IP/Ethernet
headers.

What the relay cannot do: it terminates TCP on both sides, so it sees a byte stream, not
packets. Dropping or reordering bytes there would corrupt the stream instead of emulating a
loss that TCP recovers from (a real loss is repaired by the sender's retransmission, invisible
to the application). Packet loss therefore needs a packet-level tool (netem, or a UDP path with
a lossy relay) and is out of scope here; the validation runs at loss 0. Also, because the relay
splits the connection in two, the TCP senders never see the added delay in their RTT: the
relay adds latency, not a longer ACK clock. The simulator's unlimited-window TCP behaves the
same way, which is what makes the two comparable.

Namespaces: every name carries the process id and a random tag, so parallel runs never collide,
and the namespaces (with their veth ends and qdiscs) are deleted in a ``finally``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import queue
import secrets
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import click

CHUNK = 65536
POLL_S = 0.2  # how often blocked threads look at the stop flag
ETH_WIRE = 1514  # largest Ethernet frame for a 1500-byte MTU (no FCS/preamble): tbf counts these
TIMER_SLACK_S = 150e-6  # how late tbf's watchdog timer may fire, for sizing the bucket


# --------------------------------------------------------------------------- relay


@dataclass
class RelayCounts:
    """Bytes forwarded over the relay's lifetime: ``up`` client → target, ``down`` back."""

    up: int = 0
    down: int = 0
    connections: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, direction: str, n: int) -> None:
        with self.lock:
            setattr(self, direction, getattr(self, direction) + n)


def _reader(src: socket.socket, q: queue.Queue, delay_s: float, stops) -> None:
    """Timestamp every chunk on arrival; ``None`` marks the end of the stream."""
    try:
        while not any(e.is_set() for e in stops):
            ready, _, _ = select.select([src], [], [], POLL_S)
            if not ready:
                continue
            data = src.recv(CHUNK)
            if not data:
                break
            q.put((time.monotonic() + delay_s, data))
    except OSError:
        pass
    q.put((time.monotonic() + delay_s, None))


def _writer(dst: socket.socket, q: queue.Queue, counts: RelayCounts, direction: str, stops):
    """Write each chunk once its due time has come (later if the socket is backed up, which is
    queueing, as on a real link). A failed write ends the whole pair (``stops[-1]``)."""
    try:
        while True:
            try:
                due, data = q.get(timeout=POLL_S)
            except queue.Empty:
                if any(e.is_set() for e in stops):
                    return
                continue
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            if data is None:
                with contextlib.suppress(OSError):
                    dst.shutdown(socket.SHUT_WR)
                return
            dst.sendall(data)
            counts.add(direction, len(data))
    except OSError:
        stops[-1].set()  # the peer is gone: nothing more can be delivered


def _nodelay(sock: socket.socket) -> None:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _relay_pair(client, upstream, delay_s: float, counts: RelayCounts, stop: threading.Event):
    """Pump both directions of one connection until both ends closed (or ``stop``)."""
    # blocking sockets: a sendall must never stop halfway on a timeout (that would cut the
    # stream); readers poll with select instead
    client.settimeout(None)
    upstream.settimeout(None)
    _nodelay(client)
    _nodelay(upstream)
    stops = (stop, threading.Event())
    up_q: queue.Queue = queue.Queue()
    down_q: queue.Queue = queue.Queue()
    threads = [
        threading.Thread(target=_reader, args=(client, up_q, delay_s, stops)),
        threading.Thread(target=_writer, args=(upstream, up_q, counts, "up", stops)),
        threading.Thread(target=_reader, args=(upstream, down_q, delay_s, stops)),
        threading.Thread(target=_writer, args=(client, down_q, counts, "down", stops)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


class Relay:
    """A TCP relay from ``listen`` to ``target`` that delays every chunk by ``delay_s`` in each
    direction (so a request/answer round trip gains ``2 · delay_s``). Use as a context manager;
    leaving it stops every thread and closes every socket."""

    def __init__(
        self,
        target: tuple[str, int],
        *,
        listen: tuple[str, int] = ("127.0.0.1", 0),
        delay_s: float = 0.0,
        timeout_s: float = 30.0,
    ):
        if delay_s < 0:
            raise ValueError(f"delay_s must be >= 0, got {delay_s}")
        self.target, self.listen, self.delay_s, self.timeout_s = target, listen, delay_s, timeout_s
        self.counts = RelayCounts()
        self._stop = threading.Event()
        self._listener: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._socks: list[socket.socket] = []

    @property
    def address(self) -> tuple[str, int]:
        if self._listener is None:
            raise RuntimeError("the relay is not running")
        return self._listener.getsockname()[:2]

    def __enter__(self) -> Relay:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(self.listen)
            sock.listen(8)
            sock.settimeout(POLL_S)
        except BaseException:
            sock.close()
            raise
        self._listener = sock
        accept = threading.Thread(target=self._accept, name="isplit-relay-accept")
        self._threads.append(accept)
        accept.start()
        return self

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.counts.add("connections", 1)
            t = threading.Thread(
                target=self._guarded_pair, args=(client,), name="isplit-relay-pair"
            )
            self._threads.append(t)
            t.start()

    def _guarded_pair(self, client: socket.socket) -> None:
        with client:
            try:
                upstream = socket.create_connection(self.target, timeout=self.timeout_s)
            except OSError as e:
                print(f"isplit relay: cannot reach {self.target}: {e}", file=sys.stderr)
                return
            with upstream:
                pair = [client, upstream]
                self._socks.extend(pair)
                try:
                    _relay_pair(client, upstream, self.delay_s, self.counts, self._stop)
                finally:
                    for sock in pair:
                        self._socks.remove(sock)

    def stop(self) -> None:
        self._stop.set()

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._threads:
            self._threads[0].join()  # the accept loop: no new connection after this
        for sock in list(self._socks):  # unblock a writer stuck on a peer that stopped reading
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for t in self._threads[1:]:
            t.join()
        if self._listener is not None:
            self._listener.close()


# --------------------------------------------------------------------------- namespaces


def netns_unavailable() -> str | None:
    """Why a namespace test bed cannot be built here, or ``None`` when it can."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "needs root (network namespaces, veth and tc)"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"the {tool!r} command (iproute2) is not installed"
    name = f"isplit-probe-{os.getpid():x}{secrets.token_hex(2)}"
    r = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if r.returncode != 0:
        return f"cannot create a network namespace: {r.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return None


@dataclass(frozen=True)
class NetnsPair:
    """Two namespaces joined by a veth pair, each end shaped by tbf at ``rate_bps``."""

    ns_device: str
    ns_server: str
    veth_device: str
    veth_server: str
    ip_device: str
    ip_server: str
    rate_bps: float | None
    burst_bytes: int | None
    limit_bytes: int | None

    def prefix(self, side: str) -> list[str]:
        """Command prefix that runs a program inside the ``side`` namespace."""
        ns = {"device": self.ns_device, "server": self.ns_server}[side]
        return ["ip", "netns", "exec", ns]


def _run(*cmd: str) -> None:
    r = subprocess.run(list(cmd), capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {r.stderr.strip() or r.stdout.strip()}")


def tbf_burst(rate_bps: float) -> int:
    """Default tbf bucket: one full-size frame plus what ``rate`` delivers in ``TIMER_SLACK_S``.

    Why: tbf drops a packet larger than its bucket, so one 1514-byte frame is the floor; a
    bucket of exactly one frame loses ~12 % of the rate at 100 Mb/s (the bucket stops filling
    while the qdisc waits for its timer), while 1514 + rate·150 µs / 8 reaches the rate within
    1 % from 1 to 100 Mb/s (measured here). Any bucket lets the head of a frame that finds it
    full pass at line rate, ``burst · 8 / rate`` earlier than the simulator's link would, so it
    is kept as small as the rate allows."""
    return ETH_WIRE + math.ceil(rate_bps * TIMER_SLACK_S / 8)


def tbf_args(rate_bps: float, burst_bytes: int | None, limit_bytes: int | None) -> list[str]:
    """tbf settings for a rate the simulator can assume: the bucket of :func:`tbf_burst`
    unless given, and a queue ``limit`` (4 MiB) large enough that a frame never overflows it
    (the simulator has no queue drops)."""
    burst = int(burst_bytes or tbf_burst(rate_bps))
    limit = int(limit_bytes or 4 << 20)
    return ["rate", f"{int(rate_bps)}bit", "burst", str(burst), "limit", str(limit)]


@contextlib.contextmanager
def netns_pair(
    rate_bps: float | None = None,
    *,
    burst_bytes: int | None = None,
    limit_bytes: int | None = None,
    congestion: str = "cubic",
) -> Iterator[NetnsPair]:
    """Build a device and a server namespace joined by a veth pair (10.77.0.1 ↔ 10.77.0.2),
    shaped by tbf at ``rate_bps`` in both directions (``None``: unshaped), and remove both
    namespaces on exit, also after a failure.

    Inside both namespaces (per-namespace sysctls, the host is untouched): ``congestion``
    control (cubic by default: a loss-based sender that fills the path, closest to the
    simulator's unlimited window) and no slow-start restart after idle, so a closed-loop
    stream with gaps between frames does not shrink the window every frame. Segmentation
    offload is limited to one segment per packet where the kernel allows it, so tbf shapes
    the packets the wire would carry."""
    tag = f"{os.getpid():x}{secrets.token_hex(2)}"
    pair = NetnsPair(
        ns_device=f"isplit-d-{tag}",
        ns_server=f"isplit-s-{tag}",
        veth_device=f"isd{tag}"[:15],
        veth_server=f"iss{tag}"[:15],
        ip_device="10.77.0.1",
        ip_server="10.77.0.2",
        rate_bps=rate_bps,
        burst_bytes=burst_bytes,
        limit_bytes=limit_bytes,
    )
    created: list[str] = []
    try:
        for ns in (pair.ns_device, pair.ns_server):
            _run("ip", "netns", "add", ns)
            created.append(ns)
        _run(
            "ip", "-n", pair.ns_device, "link", "add", pair.veth_device, "type", "veth",
            "peer", "name", pair.veth_server, "netns", pair.ns_server,
        )  # fmt: skip
        ends = (
            (pair.ns_device, pair.veth_device, pair.ip_device),
            (pair.ns_server, pair.veth_server, pair.ip_server),
        )
        for ns, dev, ip in ends:
            _run("ip", "-n", ns, "addr", "add", f"{ip}/30", "dev", dev)
            with contextlib.suppress(RuntimeError):  # older kernels: GSO stays on, tbf splits
                _run("ip", "-n", ns, "link", "set", dev, "gso_max_segs", "1")
            _run("ip", "-n", ns, "link", "set", dev, "up")
            _run("ip", "-n", ns, "link", "set", "lo", "up")
            for key, value in (
                ("net.ipv4.tcp_congestion_control", congestion),
                ("net.ipv4.tcp_slow_start_after_idle", "0"),
            ):
                with contextlib.suppress(RuntimeError):
                    _run("ip", "netns", "exec", ns, "sysctl", "-q", "-w", f"{key}={value}")
            if rate_bps is not None:
                _run(
                    "tc", "-n", ns, "qdisc", "add", "dev", dev, "root", "tbf",
                    *tbf_args(rate_bps, burst_bytes, limit_bytes),
                )  # fmt: skip
        yield pair
    finally:
        for ns in created:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)


def qdisc_stats(pair: NetnsPair, side: str = "device") -> str:
    """``tc -s qdisc`` of one end (sent bytes, drops, overlimits): evidence for a report."""
    ns, dev = {
        "device": (pair.ns_device, pair.veth_device),
        "server": (pair.ns_server, pair.veth_server),
    }[side]
    r = subprocess.run(
        ["tc", "-n", ns, "-s", "qdisc", "show", "dev", dev], capture_output=True, text=True
    )
    return r.stdout.strip()


# --------------------------------------------------------------------------- CLI


def wait_for_line(proc: subprocess.Popen, log: Path, needle: str, timeout_s: float) -> str:
    """The first line of ``log`` containing ``needle`` (a server announcing its port);
    fails at once if the process exits first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if log.exists():
            for line in log.read_text().splitlines():
                if needle in line:
                    return line
        if proc.poll() is not None:
            text = log.read_text() if log.exists() else ""
            raise RuntimeError(f"{proc.args[:6]} exited with {proc.returncode}:\n{text}")
        time.sleep(0.05)
    raise TimeoutError(f"no {needle!r} from {proc.args[:6]} within {timeout_s} s")


def _host_port(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        raise click.BadParameter(f"expected HOST:PORT, got {value!r}")
    return host, int(port)


@click.command("relay")
@click.option("--listen", default="127.0.0.1:0", show_default=True, help="HOST:PORT")
@click.option("--connect", "target", required=True, help="HOST:PORT of the server")
@click.option("--delay-ms", type=float, default=0.0, show_default=True, help="one-way delay")
def relay_command(listen, target, delay_ms):
    """Forward TCP connections, delaying every chunk by --delay-ms in each direction; runs
    until SIGINT/SIGTERM, then prints the forwarded byte counts as JSON."""
    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with Relay(_host_port(target), listen=_host_port(listen), delay_s=delay_ms / 1000) as relay:
        host, port = relay.address
        print(f"isplit relay: listening on {host}:{port}", file=sys.stderr, flush=True)
        while not stop.wait(POLL_S):
            pass
        relay.stop()
    c = relay.counts
    print(json.dumps({"up": c.up, "down": c.down, "connections": c.connections}))


if __name__ == "__main__":
    relay_command()
