"""Property tests of the address guard: an IPv6 address that carries an IPv4 address, in any of the
forms that can, is judged as that IPv4 address; a cloud metadata address is refused in every form.
No address is connected to: only the guard's judgement is tested."""
from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings, strategies as st

from imageserver import fetch
from imageserver.errors import Forbidden

PROPERTY = settings(max_examples=300, deadline=None)

ipv4 = st.builds(ipaddress.IPv4Address, st.integers(0, 2 ** 32 - 1))
# Where the trouble is: loopback, private, link-local, shared, this-network and metadata addresses.
dangerous_ipv4 = st.one_of(
    st.sampled_from(sorted(a for a in fetch.METADATA_ADDRESSES if a.version == 4)),
    *(st.builds(lambda n, i: n[i % n.num_addresses], st.just(ipaddress.ip_network(network)),
                st.integers(0, 2 ** 32 - 1))
      for network in ("127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
                      "169.254.0.0/16", "100.64.0.0/10", "0.0.0.0/8")))
any_ipv4 = st.one_of(ipv4, dangerous_ipv4)
bits16 = st.integers(0, 2 ** 16 - 1)
bits64 = st.integers(0, 2 ** 64 - 1)


def v6(value: int) -> ipaddress.IPv6Address:
    return ipaddress.IPv6Address(value)


# Each form: (the IPv4 address, other bits the form leaves free) -> the IPv6 address.
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


@given(st.sampled_from(sorted(FORMS)), any_ipv4, bits64)
@PROPERTY
def test_the_ipv4_address_inside_is_found(form, address, free):
    assert address in fetch.embedded_ipv4(FORMS[form](address, free))


@given(st.sampled_from(sorted(FORMS)), dangerous_ipv4, bits64)
@PROPERTY
def test_a_form_of_a_non_public_address_is_refused(form, address, free):
    embedded = FORMS[form](address, free)
    assert not fetch.is_public(str(embedded))
    with pytest.raises(Forbidden):
        fetch.check_address("host", str(embedded), allow_private=False)


@given(st.sampled_from(["ipv4-compatible", "ipv4-mapped", "ipv4-translated", "6to4", "nat64"]),
       any_ipv4, bits64)
@PROPERTY
def test_forms_with_one_ipv4_address_are_as_public_as_it(form, address, free):
    assert fetch.is_public(str(FORMS[form](address, free))) == fetch.is_public(str(address))


@given(st.sampled_from(sorted(FORMS)),
       st.sampled_from(sorted(a for a in fetch.METADATA_ADDRESSES if a.version == 4)), bits64)
@PROPERTY
def test_metadata_is_refused_in_every_form_even_with_private_sources_allowed(form, address, free):
    with pytest.raises(Forbidden, match="metadata"):
        fetch.check_address("host", str(FORMS[form](address, free)), allow_private=True)


@given(st.builds(ipaddress.IPv6Address, st.integers(0, 2 ** 128 - 1)), st.booleans())
@PROPERTY
def test_any_ipv6_address_is_judged_without_error(address, allow_private):
    try:
        fetch.check_address("host", str(address), allow_private)
    except Forbidden:
        pass
    if any(not fetch.is_public(str(inside)) for inside in fetch.embedded_ipv4(address)):
        assert not fetch.is_public(str(address))
