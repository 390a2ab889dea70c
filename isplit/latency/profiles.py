"""Network profiles: the links the split is simulated over, each with where its numbers come from.

Why a table with sources: a recommended split is only as good as the link it was chosen for, and
"typical" numbers for wireless links vary by an order of magnitude between papers, vendors and
deployments. Each profile therefore says whether its numbers are the original simulator's
setting, a standard's nominal value, or a typical value picked by us from the cited range. None of
them was measured for this project.

========== ============ ========== ====== ===================== ================================
name       uplink       one-way    MTU    default loss levels   source / status
========== ============ ========== ====== ===================== ================================
sei        1 Gb/s       100 µs     1500   0, 1, 2, 3, 4, 5 %    SEI's SCNSL setting: ``capacity
                                                                = 1e9`` both ways, delay 100
                                                                (µs) passed by ``supervisor.py``,
                                                                loss 0–5 % (docs/methods.md §5.1).
                                                                Exact, not typical.
wifi-n     40 Mb/s      2 ms       1500   0, 1 %                Typical. IEEE 802.11n-2009, one
                                                                spatial stream, 20 MHz, MCS 7,
                                                                short GI: 72.2 Mb/s PHY rate;
                                                                TCP goodput of 802.11 is commonly
                                                                50–60 % of the PHY rate (MAC
                                                                overhead, contention, block-ACK),
                                                                so ≈ 40 Mb/s for a 1×1 embedded
                                                                device near the AP. LAN RTT over
                                                                one Wi-Fi hop is typically 2–10
                                                                ms; we take 4 ms (2 ms one way).
                                                                Residual loss after 802.11 MAC
                                                                retries is usually well under 1 %.
wifi-ac    200 Mb/s     1 ms       1500   0, 1 %                Typical. IEEE 802.11ac-2013, one
                                                                spatial stream, 80 MHz, MCS 9,
                                                                short GI: 433.3 Mb/s PHY; ≈ 50 %
                                                                as goodput; RTT ≈ 2 ms.
lte        10 Mb/s      20 ms      1500   0, 1 %                Typical. 3GPP TS 36.306 category
                                                                4 UE: 51 Mb/s uplink peak; a
                                                                field trial with a category 2 UE
                                                                (Wylie-Green & Svensson,
                                                                GLOBECOM 2010) saw ≤ 19 Mb/s
                                                                single-user uplink and 22 ms
                                                                best-case user-plane latency;
                                                                public crowd-sourced reports put
                                                                median LTE uplink at 5–15 Mb/s
                                                                and RTT at 30–60 ms. We take 10
                                                                Mb/s and 40 ms RTT. HARQ/RLC
                                                                hide most radio loss.
ieee802154 100 kb/s     10 ms      102    0, 1, 5 %             Typical. IEEE 802.15.4 (2.4 GHz
                                                                O-QPSK PHY): 250 kb/s nominal,
                                                                127-byte PHY payload (MPDU), of
                                                                which ≈ 102 B are left after the
                                                                MAC header and FCS — our MTU.
                                                                Latré et al. ("Maximum
                                                                throughput and minimum delay in
                                                                IEEE 802.15.4", 2005) bound one
                                                                sender's throughput at 163 kb/s
                                                                (unslotted CSMA/CA, no
                                                                addresses); practical reports
                                                                give 40–80 kb/s. We take 100
                                                                kb/s and 10 ms one way (CSMA
                                                                backoff + turnaround, one hop).
========== ============ ========== ====== ===================== ================================

Approximations: the headers are always IPv4 + TCP/UDP + SEI's application header + a 14-byte
link header (:mod:`isplit.latency.netsim`); on 802.15.4 this stands in for 6LoWPAN (which
compresses the IP/UDP headers, but adds fragmentation headers) and for the 802.15.4 MAC header.
Wireless MAC contention, rate adaptation and link-layer retransmission delays are folded into the
chosen goodput and delay, and the residual loss is i.i.d.

A profile in the config may also be a mapping ``{name, bandwidth_bps, delay_s, mtu, losses,
source}`` for a link of one's own (e.g. a measured one).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from isplit.latency.link import ETH_HEADER, Link

SEI_LOSSES = (0.0, 0.01, 0.02, 0.03, 0.04, 0.05)


@dataclass(frozen=True)
class Profile:
    name: str
    bandwidth_bps: float
    delay_s: float
    mtu: int
    losses: tuple[float, ...]
    kind: str  # "setting" (exactly the original's), "typical" (our pick in a cited range), "custom"
    source: str
    medium: str = "wire"
    link_header: int = ETH_HEADER
    contenders: int = 0

    def link(self, loss: float, **conditions) -> Link:
        """The link at one loss level; ``conditions``: the other :class:`.link.Link` fields
        (``loss_model``, ``cross_traffic``, ``queue``, ``reverse_loss``)."""
        return Link(
            self.bandwidth_bps,
            self.delay_s,
            float(loss),
            self.mtu,
            medium=self.medium,
            link_header=self.link_header,
            contenders=self.contenders,
            **conditions,
        )


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile(
            "sei",
            1e9,
            100e-6,
            1500,
            SEI_LOSSES,
            "setting",
            "Split-Et-Impera SCNSL netsim: 1 Gb/s full duplex, 100 us, loss 0-5 % "
            "(netsim/src/main.cc, supervisor.py; docs/methods.md 5.1)",
        ),
        Profile(
            "wifi-n",
            65e6,
            0.5e-3,
            1500,
            (0.0, 0.01),
            "typical",
            "IEEE 802.11n 1x1 20 MHz MCS7 long GI: 65 Mb/s PHY, 2.4 GHz, EDCA best effort, "
            "A-MPDU and block ACK (the MAC is simulated); an edge server 0.5 ms behind the AP",
            medium="wifi-n",
        ),
        Profile(
            "wifi-ac",
            390e6,
            0.5e-3,
            1500,
            (0.0, 0.01),
            "typical",
            "IEEE 802.11ac 1x1 80 MHz MCS9 long GI: 390 Mb/s PHY, 5 GHz (the MAC is simulated); "
            "an edge server 0.5 ms behind the AP",
            medium="wifi-ac",
        ),
        Profile(
            "lte",
            10e6,
            20e-3,
            1500,
            (0.0, 0.01),
            "typical",
            "3GPP TS 36.306 cat-4 UE 51 Mb/s UL peak; field trial <=19 Mb/s UL, 22 ms user-plane "
            "latency (GLOBECOM 2010); 5-15 Mb/s median UL and 30-60 ms RTT reported (10 Mb/s, "
            "40 ms RTT taken)",
            medium="lte",
        ),
        Profile(
            "ieee802154",
            250e3,
            0.0,
            1280,
            (0.0, 0.01, 0.05),
            "typical",
            "IEEE 802.15.4 2.4 GHz O-QPSK 250 kb/s, 127-byte frames, unslotted CSMA/CA, ACKs "
            "and 3 retries, IPv6 over 6LoWPAN (the MAC and fragmentation are simulated); the "
            "server is the one-hop peer (a border router)",
            medium="ieee802154",
        ),
    )
}

DEFAULT_PROFILES = ("sei", "wifi-n", "lte", "ieee802154")


def resolve(specs, losses=None) -> list[Profile]:
    """Profiles named (or defined) in the config, in order.

    ``specs``: names from :data:`PROFILES` or mappings for custom links; ``None`` selects
    :data:`DEFAULT_PROFILES`. ``losses``: one list for every profile, or ``None`` to use each
    profile's own levels (SEI's 0–5 %, the wireless ones' 0 and 1 %).
    """
    out = []
    for spec in DEFAULT_PROFILES if specs is None else specs:
        if isinstance(spec, str):
            if spec not in PROFILES:
                raise ValueError(f"unknown network profile {spec!r}; known: {sorted(PROFILES)}")
            p = PROFILES[spec]
        elif isinstance(spec, dict):
            p = _custom(spec)
        else:
            raise ValueError(f"a network profile is a name or a mapping, got {spec!r}")
        if losses is not None:
            p = replace(p, losses=tuple(map(float, losses)))
        for loss in p.losses:
            p.link(loss)  # validates
        out.append(p)
    names = [p.name for p in out]
    if len(set(names)) != len(names):
        raise ValueError(f"network profile names repeat: {names}")
    return out


def _custom(spec: dict) -> Profile:
    """A profile of one's own: every field given, or ``like: <named profile>`` and the fields
    that differ from it (e.g. ``{name: wifi-n-busy, like: wifi-n, contenders: 4}``)."""
    known = {f.name for f in fields(Profile)} - {"kind"} | {"like"}
    unknown = set(spec) - known
    if unknown:
        raise ValueError(f"custom network profile {spec!r}: unknown keys {sorted(unknown)}")
    values = dict(spec)
    base = values.pop("like", None)
    if base is not None:
        if base not in PROFILES:
            raise ValueError(f"custom network profile {spec!r}: like {base!r} is no profile")
        values = {**{f.name: getattr(PROFILES[base], f.name) for f in fields(Profile)}, **values}
        values["source"] = spec.get("source", f"{base} with {sorted(set(spec) - {'name', 'like'})}")
    missing = {"name", "bandwidth_bps", "delay_s"} - set(values)
    if missing:
        raise ValueError(f"custom network profile {spec!r} lacks {sorted(missing)}")
    values.update(kind="custom", losses=tuple(float(x) for x in values.get("losses", (0.0,))))
    values.setdefault("mtu", 1500)
    values.setdefault("source", "config")
    return Profile(**values)


def table_markdown(profiles: list[Profile] | None = None) -> str:
    """The profiles as a markdown table (for a summary), with their sources."""
    rows = [
        "| profile | uplink | one-way delay | MTU | loss levels | kind | source |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in profiles or list(PROFILES.values()):
        rows.append(
            f"| {p.name} | {_rate(p.bandwidth_bps)} | {p.delay_s * 1e3:g} ms | {p.mtu} | "
            f"{', '.join(f'{x * 100:g} %' for x in p.losses)} | {p.kind} | {p.source} |"
        )
    return "\n".join(rows) + "\n"


def _rate(bps: float) -> str:
    for unit, f in (("Gb/s", 1e9), ("Mb/s", 1e6), ("kb/s", 1e3)):
        if bps >= f:
            return f"{bps / f:g} {unit}"
    return f"{bps:g} b/s"
