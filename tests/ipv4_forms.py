"""Every way an IPv6 address can carry an IPv4 address, as hypothesis strategies and builders: for
the address guard's property tests, and for trying such URLs against a live server."""
from __future__ import annotations

import ipaddress

from hypothesis import strategies as st

METADATA_IPV4 = ("169.254.169.254", "169.254.170.2", "169.254.170.23", "100.100.100.200", "192.0.0.192")

ipv4 = st.builds(ipaddress.IPv4Address, st.integers(0, 2 ** 32 - 1))
# Where the trouble is: metadata, loopback, private, link-local, shared and this-network addresses.
dangerous_ipv4 = st.one_of(
    st.sampled_from([ipaddress.IPv4Address(a) for a in METADATA_IPV4]),
    *(st.builds(lambda n, i: n[i % n.num_addresses], st.just(ipaddress.ip_network(network)),
                st.integers(0, 2 ** 32 - 1))
      for network in ("127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
                      "169.254.0.0/16", "100.64.0.0/10", "0.0.0.0/8")))
any_ipv4 = st.one_of(ipv4, dangerous_ipv4)
free_bits = st.integers(0, 2 ** 64 - 1)


def v6(value: int) -> ipaddress.IPv6Address:
    return ipaddress.IPv6Address(value)


# Each form: (the IPv4 address, bits the form leaves free) -> the IPv6 address carrying it.
FORMS = {
    "ipv4-compatible": (lambda a, _: v6(int(a))),
    "ipv4-mapped": (lambda a, _: v6(0xFFFF << 32 | int(a))),
    "ipv4-translated": (lambda a, _: v6(0xFFFF << 48 | int(a))),
    "6to4": (lambda a, free: v6(0x2002 << 112 | int(a) << 80 | free % 2 ** 80)),
    "nat64": (lambda a, _: v6(0x64FF9B << 96 | int(a))),
    "nat64-local/96": (lambda a, _: v6(0x64FF9B0001 << 80 | int(a))),
    "nat64-local/48": (lambda a, free: v6(0x64FF9B0001 << 80 | (int(a) >> 16) << 64
                                          | (int(a) & 0xFFFF) << 40 | free % 2 ** 40)),
    "nat64-local/64": (lambda a, free: v6(0x64FF9B0001 << 80 | (free % 2 ** 16) << 64
                                          | int(a) << 24 | free % 2 ** 24)),
    "teredo-client": (lambda a, free: v6(0x20010000 << 96 | (free % 2 ** 32) << 64
                                         | (free % 2 ** 32) << 32 | int(a) ^ 0xFFFFFFFF)),
    "teredo-server": (lambda a, free: v6(0x20010000 << 96 | int(a) << 64 | free % 2 ** 64)),
}
# The forms that carry exactly one IPv4 address, in one place.
SINGLE = ("ipv4-compatible", "ipv4-mapped", "ipv4-translated", "6to4", "nat64")
forms = st.sampled_from(sorted(FORMS))
