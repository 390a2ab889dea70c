"""A lossy, delaying Ethernet bridge between two network namespaces: packet loss for the real
Linux TCP and UDP stacks on a kernel without ``netem``.

Why user space: the kernel here has no netem qdisc, no gact action and no iptables/nft, so the
kernel cannot drop packets at random; ``tbf`` (rate) and AF_PACKET raw sockets do work. The test
bed is three namespaces,

    device [dv] <-veth-> [ba] bridge [bb] <-veth-> [sv] server

where the bridge namespace runs :func:`bridge`: it reads every Ethernet frame arriving on ``ba``
or ``bb`` from a raw socket, holds it for ``delay_s`` and writes it out of the other interface,
dropping data frames from the device to the server with probability ``loss`` (seeded). The two
ends run the kernel's own TCP and UDP (SACK, RACK/TLP, delayed ACKs; the sender picks CUBIC per
socket, :mod:`tools.frame_stream`, because a namespace inherits the host's default algorithm),
so what the latency simulator models is held against Linux itself.

What matters for it to be a faithful link (each found necessary):

* only frames carrying data are dropped (IPv4 TCP with payload, or UDP): ARP, SYNs and pure ACKs
  always pass, as in the simulator, whose loss applies to data packets;
* the end interfaces send complete packets: checksum offload, TSO and GSO are switched off
  (:func:`offload_off`, the ``ETHTOOL_S*`` ioctls), else frames carry partial checksums that the
  receiver drops after re-injection, or 64 kB super-packets the raw socket cannot forward;
  GRO is off on the bridge's interfaces so it sees wire-size frames;
* the bridge's interfaces are promiscuous (else it never sees frames for the far end's MAC);
* the rate is shaped by ``tbf`` on the two end interfaces, well below what the bridge forwards,
  so the bridge never drops by falling behind; the kernel's count of frames the raw sockets
  dropped (``PACKET_STATISTICS``) is reported and must be 0 — only the bridge's seeded drops
  are losses;
* the bridge logs every drop with what it hit (TCP: the byte offset in the stream, from the SYN's
  initial sequence number; UDP: the datagram's frame id), and whether it was a first
  transmission, so measured frames can be classed as clean or lossy exactly as simulated ones.

Namespaces carry the process id and a random tag, and are deleted in a ``finally``; the bridge
is stopped by its own process id.
"""

from __future__ import annotations

import array
import contextlib
import fcntl
import heapq
import json
import os
import random
import secrets
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tools.relay import netns_unavailable, tbf_args

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
SOL_PACKET = 263
PACKET_STATISTICS = 6
SIOCETHTOOL = 0x8946
# struct ethtool_value commands (include/uapi/linux/ethtool.h): the legacy set-offload calls
ETHTOOL = {"tx": 0x17, "sg": 0x19, "tso": 0x1F, "gso": 0x24, "gro": 0x2C}


def offload_off(dev: str, features=("tx", "sg", "tso", "gso", "gro")) -> None:
    """Switch off checksum/segmentation offloads of ``dev`` (in the caller's namespace)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for name in features:
            value = array.array("I", [ETHTOOL[name], 0])
            ifr = struct.pack("16sP", dev.encode(), value.buffer_info()[0])
            with contextlib.suppress(OSError):  # a feature the driver does not have
                fcntl.ioctl(s.fileno(), SIOCETHTOOL, ifr)


def classify(frame: bytes):
    """``(proto, flow, seq, payload_len, flags)`` of an IPv4 TCP/UDP frame, else ``None``."""
    if len(frame) < 34 or frame[12:14] != b"\x08\x00":
        return None
    ihl = (frame[14] & 0x0F) * 4
    total = struct.unpack_from("!H", frame, 16)[0]
    proto = frame[23]
    l4 = 14 + ihl
    flow = frame[26:34] + frame[l4 : l4 + 4]  # addresses and ports
    if proto == 6 and len(frame) >= l4 + 20:
        seq = struct.unpack_from("!I", frame, l4 + 4)[0]
        doff = (frame[l4 + 12] >> 4) * 4
        return "tcp", flow, seq, total - ihl - doff, frame[l4 + 13]
    if proto == 17 and len(frame) >= l4 + 12:
        frame_id = struct.unpack_from("!I", frame, l4 + 8)[0]  # tools.frame_stream's header
        return "udp", flow, frame_id, total - ihl - 8, 0
    return None


def bridge(a: str, b: str, *, loss: float, delay_s: float, seed: int, stats_path: str) -> None:
    """Forward frames between interfaces ``a`` (device side) and ``b`` until SIGTERM, then write
    the counts and the drop log to ``stats_path`` (JSON)."""
    rng = random.Random(seed)
    socks = {}
    for dev in (a, b):
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        s.bind((dev, 0))
        s.setblocking(False)
        socks[dev] = s
    other = {a: socks[b], b: socks[a]}
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    counts = {"a_to_b": 0, "b_to_a": 0, "data_a_to_b": 0, "dropped": 0}
    isn: dict[bytes, int] = {}
    seen: set = set()
    drops: list = []
    queue: list = []
    order = 0
    print("isplit lossy bridge: ready", flush=True)
    while not stop:
        wait = max(0.0, queue[0][0] - time.monotonic()) if queue else 0.2
        ready, _, _ = select.select(list(socks.values()), [], [], wait)
        now = time.monotonic()
        for s in ready:
            dev = next(d for d, x in socks.items() if x is s)
            while True:
                try:
                    frame, addr = s.recvfrom(65535)
                except BlockingIOError:
                    break
                if addr[2] == PACKET_OUTGOING:
                    continue  # our own transmission on the other interface
                counts["a_to_b" if dev == a else "b_to_a"] += 1
                info = classify(frame) if dev == a else None
                if info is not None:
                    proto, flow, seq, length, flags = info
                    if proto == "tcp" and flags & 0x02:  # SYN: the stream's origin
                        isn[flow] = seq
                    if (proto == "udp" or length > 0) and (proto == "udp" or flow in isn):
                        counts["data_a_to_b"] += 1
                        key = (seq - isn[flow] - 1) % (1 << 32) if proto == "tcp" else seq
                        first = (proto, flow, key, length) not in seen
                        seen.add((proto, flow, key, length))
                        if loss and rng.random() < loss:
                            counts["dropped"] += 1
                            port = struct.unpack_from("!H", flow, 10)[0]
                            drops.append([proto, port, key, length, first])
                            continue
                order += 1
                heapq.heappush(queue, (now + delay_s, order, dev, frame))
        now = time.monotonic()
        while queue and queue[0][0] <= now:
            _, _, dev, frame = heapq.heappop(queue)
            with contextlib.suppress(OSError):
                other[dev].send(frame)
    kernel_drops = 0
    for s in socks.values():
        _, dropped = struct.unpack("II", s.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
        kernel_drops += dropped
        s.close()
    out = {**counts, "kernel_drops": kernel_drops, "loss": loss, "delay_s": delay_s}
    out["drops"] = drops
    Path(stats_path).write_text(json.dumps(out))


@dataclass(frozen=True)
class LossyLink:
    """The three namespaces of one test bed, and how to run commands in its ends."""

    ns_device: str
    ns_bridge: str
    ns_server: str
    ip_device: str
    ip_server: str
    stats_path: Path

    def prefix(self, side: str) -> list[str]:
        ns = {"device": self.ns_device, "server": self.ns_server}[side]
        return ["ip", "netns", "exec", ns, *realtime()]

    def stats(self) -> dict:
        return json.loads(self.stats_path.read_text())


def realtime() -> list[str]:
    """A command prefix giving a (mostly sleeping) process a real-time priority, so that its
    wake-ups are not delayed by other work on a shared machine; empty without ``chrt``."""
    return ["chrt", "-f", "10"] if shutil.which("chrt") else []


def _run(*cmd: str) -> None:
    r = subprocess.run(list(cmd), capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {r.stderr.strip() or r.stdout.strip()}")


def _mac(ns: str, dev: str) -> str:
    r = subprocess.run(
        ["ip", "-n", ns, "-j", "link", "show", "dev", dev],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return json.loads(r.stdout)[0]["address"]


def _in_ns(ns: str, *args: str) -> None:
    _run("ip", "netns", "exec", ns, sys.executable, "-m", "tools.lossy_bridge", *args)


@contextlib.contextmanager
def lossy_link(
    rate_bps: float,
    *,
    loss: float,
    delay_s: float,
    seed: int,
    work: Path,
    burst_bytes: int | None = None,
    limit_bytes: int | None = None,
) -> Iterator[LossyLink]:
    """Build device, bridge and server namespaces (10.78.0.1 ↔ 10.78.0.2), shape both end
    interfaces with tbf at ``rate_bps``, start the bridge; on exit stop it (its counts are then
    in ``LossyLink.stats()``) and delete the namespaces, also after a failure."""
    reason = netns_unavailable()
    if reason:
        raise RuntimeError(reason)
    tag = f"{os.getpid():x}{secrets.token_hex(2)}"
    link = LossyLink(
        f"isplit-ld-{tag}",
        f"isplit-lb-{tag}",
        f"isplit-ls-{tag}",
        "10.78.0.1",
        "10.78.0.2",
        Path(work) / f"bridge-{tag}.json",
    )
    dv, ba, bb, sv = (f"{x}{tag}"[:15] for x in ("dv", "ba", "bb", "sv"))
    created: list[str] = []
    proc = None
    try:
        for ns in (link.ns_device, link.ns_bridge, link.ns_server):
            _run("ip", "netns", "add", ns)
            created.append(ns)
        _run(
            "ip",
            "-n",
            link.ns_device,
            "link",
            "add",
            dv,
            "type",
            "veth",
            "peer",
            "name",
            ba,
            "netns",
            link.ns_bridge,
        )
        _run(
            "ip",
            "-n",
            link.ns_server,
            "link",
            "add",
            sv,
            "type",
            "veth",
            "peer",
            "name",
            bb,
            "netns",
            link.ns_bridge,
        )
        for ns, dev in ((link.ns_bridge, ba), (link.ns_bridge, bb)):
            _run("ip", "-n", ns, "link", "set", dev, "promisc", "on", "up")
            _in_ns(ns, "offload", dev)
        for ns, dev, ip in (
            (link.ns_device, dv, link.ip_device),
            (link.ns_server, sv, link.ip_server),
        ):
            _run("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", dev)
            _run("ip", "-n", ns, "link", "set", dev, "up")
            _run("ip", "-n", ns, "link", "set", "lo", "up")
            _in_ns(ns, "offload", dev)
            _run(
                "tc",
                "-n",
                ns,
                "qdisc",
                "add",
                "dev",
                dev,
                "root",
                "tbf",
                *tbf_args(rate_bps, burst_bytes, limit_bytes),
            )
        # permanent neighbour entries: no ARP exchange delays (or is lost with) a first frame
        macs = {ns: _mac(ns, dev) for ns, dev in ((link.ns_device, dv), (link.ns_server, sv))}
        for ns, dev, ip, peer in (
            (link.ns_device, dv, link.ip_server, link.ns_server),
            (link.ns_server, sv, link.ip_device, link.ns_device),
        ):
            _run(
                "ip",
                "-n",
                ns,
                "neigh",
                "replace",
                ip,
                "lladdr",
                macs[peer],
                "dev",
                dev,
                "nud",
                "permanent",
            )
        log = open(Path(work) / f"bridge-{tag}.log", "w")  # noqa: SIM115 (closed below)
        cmd = [
            "ip",
            "netns",
            "exec",
            link.ns_bridge,
            *realtime(),
            sys.executable,
            "-m",
            "tools.lossy_bridge",
            "bridge",
            ba,
            bb,
            "--loss",
            str(loss),
            "--delay-s",
            str(delay_s),
            "--seed",
            str(seed),
            "--stats",
            str(link.stats_path),
        ]
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=_root())
        deadline = time.monotonic() + 30
        while "ready" not in Path(log.name).read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the bridge did not start:\n{Path(log.name).read_text()}")
            time.sleep(0.05)
        yield link
    finally:
        if proc is not None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)
            log.close()
        for ns in created:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)


def _root() -> str:
    return str(Path(__file__).resolve().parents[1])


def main(argv=None) -> int:
    import argparse

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("bridge", help="run the bridge (in the bridge namespace)")
    b.add_argument("a", help="device-side interface")
    b.add_argument("b", help="server-side interface")
    b.add_argument("--loss", type=float, default=0.0)
    b.add_argument("--delay-s", type=float, default=0.0)
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--stats", required=True)
    o = sub.add_parser("offload", help="switch offloads off (in the interface's namespace)")
    o.add_argument("devs", nargs="+")
    args = p.parse_args(argv)
    if args.cmd == "bridge":
        bridge(
            args.a,
            args.b,
            loss=args.loss,
            delay_s=args.delay_s,
            seed=args.seed,
            stats_path=args.stats,
        )
    else:
        for dev in args.devs:
            offload_off(dev)
    return 0


if __name__ == "__main__":
    sys.exit(main())
