# -*- coding: utf-8 -*-
"""The one P_Key / GUID parser: every spelling the tools print, every invalid value refused by name."""

import pytest

from ansible_collections.hpcnet.infiniband.plugins.module_utils import _values as v


@pytest.mark.parametrize(
    "given, number",
    [("0x8002", 0x8002), ("8002", 0x8002), ("0X8002", 0x8002), (" 8002 ", 0x8002), (32770, 0x8002),
     ("7fff", 0x7FFF), ("ffff", 0xFFFF), ("1", 0x0001), ("0x0001", 1)],
)
def test_pkey_text_is_hex_and_integers_are_values(given, number):
    assert v.parse_pkey(given) == number
    assert v.format_pkey(v.parse_pkey(given)) == "0x%04x" % number


@pytest.mark.parametrize("given", ["0x0000", "8000", 0, 0x8000, 0x10000, -1, "0x18002", "zz", "", None, True, "0x"])
def test_pkey_invalid_values_are_refused_by_name(given):
    with pytest.raises(ValueError) as err:
        v.parse_pkey(given)
    assert "P_Key" in str(err.value)
    assert v.pkey_or_none(given) is None


def test_pkey_membership_helpers():
    assert v.full_member(0x0002) == 0x8002
    assert v.partition(0x8002) == 0x0002


@pytest.mark.parametrize(
    "given",
    ["0002:c903:00a1:b2c1", "00:02:c9:03:00:a1:b2:c1", "0x0002c90300a1b2c1", "0002c90300a1b2c1",
     "0002:C903:00A1:B2C1", 0x0002C90300A1B2C1],
)
def test_guid_every_spelling(given):
    number = v.parse_guid(given)
    assert number == 0x0002C90300A1B2C1
    assert v.format_guid(number) == "0002:c903:00a1:b2c1"
    assert v.format_guid_hex(number) == "0x0002c90300a1b2c1"
    assert v.format_guid_octets(number) == "00:02:c9:03:00:a1:b2:c1"


@pytest.mark.parametrize("given", ["", None, False, "0x", "g002c90300a1b2c1", "0x10002c90300a1b2c1", 1 << 64, -1,
                                   "0002:c903:00a1", "0002:c903:00a1:b2c1:0000"])
def test_guid_invalid(given):
    with pytest.raises(ValueError):
        v.parse_guid(given)
    assert v.guid_or_none(given) is None
