"""Property tests of the address guard: an IPv6 address that carries an IPv4 address, in any of the
forms that can, is judged as that IPv4 address; a cloud metadata address is refused in every form.
No address is connected to: only the guard's judgement is tested."""
from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imageserver.core.errors import Forbidden
from imageserver.sources import addresses
from tests.ipv4_forms import FORMS, METADATA_IPV4, SINGLE, any_ipv4, dangerous_ipv4, forms, free_bits

PROPERTY = settings(max_examples=300, deadline=None)
metadata_ipv4 = st.sampled_from([ipaddress.IPv4Address(a) for a in METADATA_IPV4])


@given(forms, any_ipv4, free_bits)
@PROPERTY
def test_the_ipv4_address_inside_is_found(form, address, free):
    assert address in addresses.embedded_ipv4(FORMS[form](address, free))


@given(forms, dangerous_ipv4, free_bits)
@PROPERTY
def test_a_form_of_a_non_public_address_is_refused(form, address, free):
    embedded = FORMS[form](address, free)
    assert not addresses.is_public(str(embedded))
    with pytest.raises(Forbidden):
        addresses.check_address("host", str(embedded), allow_private=False)


@given(st.sampled_from(SINGLE), any_ipv4, free_bits)
@PROPERTY
def test_forms_with_one_ipv4_address_are_as_public_as_it(form, address, free):
    assert addresses.is_public(str(FORMS[form](address, free))) == addresses.is_public(str(address))


@given(forms, metadata_ipv4, free_bits)
@PROPERTY
def test_metadata_is_refused_in_every_form_even_with_private_sources_allowed(form, address, free):
    with pytest.raises(Forbidden, match="metadata"):
        addresses.check_address("host", str(FORMS[form](address, free)), allow_private=True)


@given(st.builds(ipaddress.IPv6Address, st.integers(0, 2 ** 128 - 1)), st.booleans())
@PROPERTY
def test_any_ipv6_address_is_judged_without_error(address, allow_private):
    try:
        addresses.check_address("host", str(address), allow_private)
    except Forbidden:
        pass
    if any(not addresses.is_public(str(inside)) for inside in addresses.embedded_ipv4(address)):
        assert not addresses.is_public(str(address))
