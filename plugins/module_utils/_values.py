# -*- coding: utf-8 -*-
# Copyright: hpcnet.infiniband contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One home per InfiniBand value type: P_Keys and GUIDs are parsed and formatted here only, and the
interface MTU range is checked here only; an IPoIB child's name is made here only (``child_name``).

The rule, for every module, role and filter of the collection (docs/values.md):

- **P_Key**: text is hexadecimal, as every InfiniBand tool prints it (``ibstat``, sysfs ``pkeys/*``,
  opensm's partitions.conf, ``ip link``): ``"0x8002"``, ``"8002"`` and ``"0X8002"`` are all 0x8002.
  An integer is taken as its value (unquoted YAML ``0x8002`` reaches us as 32770, which is 0x8002).
  Range 0x0001-0xffff; 0x0000 and 0x8000 (membership bit without a partition) are invalid.
  Bit 15 is full membership.
- **GUID**: text is hexadecimal, 64 bits, in any of the spellings the tools use: kernel sysfs
  ``0002:c903:00a1:b2c1``, ``ip link`` octets ``00:02:c9:03:00:a1:b2:c1``, ``0x0002c90300a1b2c1``
  (ibstat, opensm), or bare hex digits. An integer is taken as its value.

Options that take a P_Key or GUID are declared ``type: raw`` so that an integer reaches us as an
integer (``type: str`` would turn 32770 into the text "32770", which is hex 0x32770).
"""

from __future__ import annotations

import re

# An interface MTU as Linux takes it: 68 (the IPv4 minimum) to 65520 (the largest IPoIB MTU, connected mode).
MTU_MIN, MTU_MAX = 68, 65520
FULL_MEMBER = 0x8000
PARTITION_MASK = 0x7FFF
DEFAULT_PKEY = 0xFFFF

_PKEY_TEXT_RE = re.compile(r"^(?:0x)?([0-9a-f]{1,4})$")
_GUID_KERNEL_RE = re.compile(r"^[0-9a-f]{4}(?::[0-9a-f]{4}){3}$")
_GUID_OCTETS_RE = re.compile(r"^[0-9a-f]{1,2}(?::[0-9a-f]{1,2}){7}$")
_GUID_HEX_RE = re.compile(r"^(?:0x)?([0-9a-f]{1,16})$")


def _shown(value):
    """The value as an error message names it: short, one line."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# --------------------------------------------------------------------------- P_Keys
def parse_pkey(value):
    """P_Key as an int (0x0001-0xffff, not 0x8000). Raises ValueError naming the value."""
    if isinstance(value, bool) or value is None:
        raise ValueError("P_Key %s is not a number: give it in hex, e.g. 0x8002" % _shown(value))
    if isinstance(value, int):
        number = value
    else:
        match = _PKEY_TEXT_RE.match(str(value).strip().lower())
        if not match:
            raise ValueError(
                "P_Key %s is not a hexadecimal P_Key such as 0x8002 (four hex digits at most)" % _shown(value)
            )
        number = int(match.group(1), 16)
    if not 0 <= number <= 0xFFFF:
        raise ValueError("P_Key %s is outside 0x0001-0xffff" % _shown(value))
    if number & PARTITION_MASK == 0:
        raise ValueError("P_Key %s is invalid: 0x0000 and 0x8000 name no partition" % format_pkey(number))
    return number


def pkey_or_none(value):
    """parse_pkey for values read from a host or a file: None instead of an error."""
    try:
        return parse_pkey(value)
    except ValueError:
        return None


def format_pkey(number):
    """int -> ``0x8002``: the one text form of a P_Key in results, files and messages."""
    return "0x%04x" % number


def full_member(number):
    """The P_Key with the full-membership bit set (what a port that owns the partition carries)."""
    return number | FULL_MEMBER


def partition(number):
    """The partition number of a P_Key (membership bit cleared): 0x8002 and 0x0002 are one partition."""
    return number & PARTITION_MASK


def child_name(parent, pkey):
    """The name the kernel gives an IPoIB child made through ``create_child``: ``ib0.8002`` (the P_Key as
    an int, written as it is, membership bit included)."""
    return "%s.%04x" % (parent, pkey)


# --------------------------------------------------------------------------- GUIDs
def parse_guid(value):
    """GUID as an int (64 bits) from any spelling the tools use. Raises ValueError naming the value."""
    if isinstance(value, bool) or value is None:
        raise ValueError("GUID %s is not a GUID such as 0x0002c90300a1b2c1" % _shown(value))
    if isinstance(value, int):
        if 0 <= value < 1 << 64:
            return value
        raise ValueError("GUID %s does not fit in 64 bits" % _shown(value))
    text = str(value).strip().lower()
    if _GUID_KERNEL_RE.match(text):
        return int(text.replace(":", ""), 16)
    if _GUID_OCTETS_RE.match(text):
        return int("".join(part.zfill(2) for part in text.split(":")), 16)
    match = _GUID_HEX_RE.match(text)
    if match:
        return int(match.group(1), 16)
    raise ValueError(
        "GUID %s is not a GUID (0x0002c90300a1b2c1, 0002:c903:00a1:b2c1 or 00:02:c9:03:00:a1:b2:c1)"
        % _shown(value)
    )


def guid_or_none(value):
    """parse_guid for values read from a host or a file: None instead of an error."""
    try:
        return parse_guid(value)
    except ValueError:
        return None


def format_guid(number):
    """int -> kernel sysfs format ``0002:c903:00a1:b2c1`` (the facts model's GUID form)."""
    text = "%016x" % number
    return ":".join(text[i:i + 4] for i in range(0, 16, 4))


def format_guid_hex(number):
    """int -> ``0x0002c90300a1b2c1`` (what opensm, ibstat -p and ibnetdiscover print)."""
    return "0x%016x" % number


def format_guid_octets(number):
    """int -> ``00:02:c9:03:00:a1:b2:c1`` (what ``ip link set ... vf N node_guid`` takes)."""
    text = "%016x" % number
    return ":".join(text[i:i + 2] for i in range(0, 16, 2))


def is_mtu(value):
    """True for an integer (never a bool) within MTU_MIN..MTU_MAX."""
    return isinstance(value, int) and not isinstance(value, bool) and MTU_MIN <= value <= MTU_MAX
