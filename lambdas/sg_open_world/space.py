"""How much of the public IPv4 or IPv6 address space a set of ranges covers: the measure of "the world".

Only the ranges' union counts, so splitting `0.0.0.0/0` into halves, quarters or many big blocks covers just as
much. Addresses that are not public are never counted, so a private or documentation range covers nothing.

Not public, after the IANA special-purpose address registries (the entries whose "Globally Reachable" is False:
https://www.iana.org/assignments/iana-ipv4-special-registry/ and
https://www.iana.org/assignments/iana-ipv6-special-registry/):
- IPv4: 0.0.0.0/8, 10.0.0.0/8, 100.64.0.0/10, 127.0.0.0/8, 169.254.0.0/16, 172.16.0.0/12, 192.0.0.0/24,
  192.0.2.0/24, 192.168.0.0/16, 198.18.0.0/15, 198.51.100.0/24, 203.0.113.0/24, 240.0.0.0/4 (with
  255.255.255.255/32), and the multicast block 224.0.0.0/4 (IANA's multicast registry: a multicast address is never
  the source of a connection). The few globally reachable /32s inside 192.0.0.0/24 are left out with it: they hold
  anycast services, not clients.
- IPv6: everything outside 2000::/3, the only block IANA allocates global unicast addresses from (the IPv6 Address
  Space registry marks the rest reserved, unique-local fc00::/7, link-local fe80::/10 or multicast ff00::/8); inside
  it, 2001::/23 (IETF protocol assignments), 2001:db8::/32 and 3fff::/20 (documentation).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Interval = tuple[int, int]  # first and last address, inclusive

_NOT_PUBLIC_V4 = (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12", "192.0.0.0/24",
    "192.0.2.0/24", "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4",
    "240.0.0.0/4",
)  # fmt: skip
_PUBLIC_V6_BLOCK = "2000::/3"
_NOT_PUBLIC_IN_V6_BLOCK = ("2001::/23", "2001:db8::/32", "3fff::/20")


def _interval(network: Network) -> Interval:
    return int(network.network_address), int(network.broadcast_address)


def _merge(intervals: Iterable[Interval]) -> list[Interval]:
    merged: list[Interval] = []
    for low, high in sorted(intervals):
        if merged and low <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    return merged


def _subtract(base: Sequence[Interval], holes: Iterable[Interval]) -> list[Interval]:
    """`base` minus `holes`; both merged and sorted."""
    out: list[Interval] = []
    holes = _merge(holes)
    for low, high in base:
        cursor = low
        for hole_low, hole_high in holes:
            if hole_high < cursor or hole_low > high:
                continue
            if hole_low > cursor:
                out.append((cursor, hole_low - 1))
            cursor = max(cursor, hole_high + 1)
        if cursor <= high:
            out.append((cursor, high))
    return out


def _intervals(cidrs: Iterable[str]) -> list[Interval]:
    return [_interval(ipaddress.ip_network(c)) for c in cidrs]


PUBLIC: dict[int, list[Interval]] = {
    4: _subtract(_intervals(["0.0.0.0/0"]), _intervals(_NOT_PUBLIC_V4)),
    6: _subtract(_intervals([_PUBLIC_V6_BLOCK]), _intervals(_NOT_PUBLIC_IN_V6_BLOCK)),
}
PUBLIC_SIZE: dict[int, int] = {v: sum(high - low + 1 for low, high in spans) for v, spans in PUBLIC.items()}


def public_addresses(networks: Iterable[Network], version: int) -> int:
    """How many public addresses of IP `version` the union of `networks` holds."""
    covered = _merge(_interval(n) for n in networks if n.version == version)
    total = 0
    # Both lists are sorted and disjoint: one walk over each finds every overlap.
    spans, i = PUBLIC[version], 0
    for low, high in covered:
        while i < len(spans) and spans[i][1] < low:
            i += 1
        j = i
        while j < len(spans) and spans[j][0] <= high:
            total += min(high, spans[j][1]) - max(low, spans[j][0]) + 1
            j += 1
    return total


def public_share(networks: Iterable[Network]) -> float:
    """The larger of the shares of public IPv4 and public IPv6 space that the union of `networks` covers (0..1)."""
    nets = list(networks)
    return max(public_addresses(nets, version) / PUBLIC_SIZE[version] for version in (4, 6))
