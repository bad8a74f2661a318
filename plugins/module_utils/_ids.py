# -*- coding: utf-8 -*-
# Copyright: hpcnet.infiniband contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PCI vendor/device IDs of RDMA adapters -> model names.

Sources: the kernel's PCI ID tables (mlx4_core ``mlx4_pci_table``, mlx5_core ``mlx5_core_pci_table``,
ib_qib ``qib_pci_tbl``, hfi1 ``hfi1_pci_tbl``) and the pci.ids database. Only adapters this collection
cares about are listed; anything else gets ``model: None`` and is still reported with its raw IDs.

QLogic TrueScale kept its QLogic/PathScale IDs after Intel bought the line (there are no 0x8086 qib
IDs); Intel's own InfiniBand-like adapters are Omni-Path (hfi1, 0x8086:0x24f0/0x24f1).
"""

from __future__ import annotations

__all__ = ["PCI_IDS", "VENDORS", "lookup", "model_name", "normalize_id"]

VENDOR_MELLANOX = 0x15B3
VENDOR_QLOGIC = 0x1077
VENDOR_PATHSCALE = 0x1FC1
VENDOR_INTEL = 0x8086

VENDORS = {
    VENDOR_MELLANOX: "Mellanox",
    VENDOR_QLOGIC: "QLogic",
    VENDOR_PATHSCALE: "QLogic (PathScale)",
    VENDOR_INTEL: "Intel",
}

# (vendor, device) -> (model, family/driver, is_vf)
PCI_IDS = {
    # Mellanox ConnectX / ConnectX-2 (mlx4)
    (VENDOR_MELLANOX, 0x6340): ("ConnectX", "mlx4", False),
    (VENDOR_MELLANOX, 0x634A): ("ConnectX", "mlx4", False),
    (VENDOR_MELLANOX, 0x6354): ("ConnectX", "mlx4", False),
    (VENDOR_MELLANOX, 0x6732): ("ConnectX", "mlx4", False),
    (VENDOR_MELLANOX, 0x673C): ("ConnectX", "mlx4", False),
    (VENDOR_MELLANOX, 0x6368): ("ConnectX EN", "mlx4", False),
    (VENDOR_MELLANOX, 0x6750): ("ConnectX-2 EN", "mlx4", False),
    (VENDOR_MELLANOX, 0x6372): ("ConnectX EN", "mlx4", False),
    (VENDOR_MELLANOX, 0x675A): ("ConnectX EN", "mlx4", False),
    (VENDOR_MELLANOX, 0x6764): ("ConnectX-2 EN", "mlx4", False),
    (VENDOR_MELLANOX, 0x6746): ("ConnectX-2", "mlx4", False),
    (VENDOR_MELLANOX, 0x676E): ("ConnectX-2", "mlx4", False),
    (VENDOR_MELLANOX, 0x1002): ("ConnectX-2 Virtual Function", "mlx4", True),
    # ConnectX-3 / ConnectX-3 Pro (mlx4)
    (VENDOR_MELLANOX, 0x1003): ("ConnectX-3", "mlx4", False),
    (VENDOR_MELLANOX, 0x1004): ("ConnectX-3 Virtual Function", "mlx4", True),
    (VENDOR_MELLANOX, 0x1007): ("ConnectX-3 Pro", "mlx4", False),
    # Connect-IB, ConnectX-4 and later (mlx5)
    (VENDOR_MELLANOX, 0x1011): ("Connect-IB", "mlx5", False),
    (VENDOR_MELLANOX, 0x1012): ("Connect-IB Virtual Function", "mlx5", True),
    (VENDOR_MELLANOX, 0x1013): ("ConnectX-4", "mlx5", False),
    (VENDOR_MELLANOX, 0x1014): ("ConnectX-4 Virtual Function", "mlx5", True),
    (VENDOR_MELLANOX, 0x1015): ("ConnectX-4 Lx", "mlx5", False),
    (VENDOR_MELLANOX, 0x1016): ("ConnectX-4 Lx Virtual Function", "mlx5", True),
    (VENDOR_MELLANOX, 0x1017): ("ConnectX-5", "mlx5", False),
    (VENDOR_MELLANOX, 0x1018): ("ConnectX-5 Virtual Function", "mlx5", True),
    (VENDOR_MELLANOX, 0x1019): ("ConnectX-5 Ex", "mlx5", False),
    (VENDOR_MELLANOX, 0x101A): ("ConnectX-5 Ex Virtual Function", "mlx5", True),
    (VENDOR_MELLANOX, 0x101B): ("ConnectX-6", "mlx5", False),
    (VENDOR_MELLANOX, 0x101C): ("ConnectX-6 Virtual Function", "mlx5", True),
    (VENDOR_MELLANOX, 0x101D): ("ConnectX-6 Dx", "mlx5", False),
    (VENDOR_MELLANOX, 0x101E): ("ConnectX Family Virtual Function", "mlx5", True),
    (VENDOR_MELLANOX, 0x101F): ("ConnectX-6 Lx", "mlx5", False),
    (VENDOR_MELLANOX, 0x1021): ("ConnectX-7", "mlx5", False),
    (VENDOR_MELLANOX, 0x1023): ("ConnectX-8", "mlx5", False),
    (VENDOR_MELLANOX, 0xA2D2): ("BlueField", "mlx5", False),
    (VENDOR_MELLANOX, 0xA2D3): ("BlueField Virtual Function", "mlx5", True),
    (VENDOR_MELLANOX, 0xA2D6): ("BlueField-2", "mlx5", False),
    (VENDOR_MELLANOX, 0xA2DC): ("BlueField-3", "mlx5", False),
    # QLogic / Intel TrueScale (ib_qib)
    (VENDOR_PATHSCALE, 0x0010): ("InfiniPath QHT7140 / QLE7140 (TrueScale 6120)", "qib", False),
    (VENDOR_QLOGIC, 0x7220): ("TrueScale QLE7240/7280 (7220)", "qib", False),
    (VENDOR_QLOGIC, 0x7322): ("TrueScale QLE7340/7342 (7322)", "qib", False),
    # Intel Omni-Path (hfi1)
    (VENDOR_INTEL, 0x24F0): ("Omni-Path HFI Silicon 100 (discrete)", "hfi1", False),
    (VENDOR_INTEL, 0x24F1): ("Omni-Path HFI Silicon 100 (integrated)", "hfi1", False),
}


def normalize_id(value):
    """``"0x15b3"``, ``"15b3"``, ``0x15b3`` -> 0x15b3; anything else -> None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 <= value <= 0xFFFF else None
    if not isinstance(value, str):
        return None
    text = value.strip().lower()
    if text.startswith("0x"):
        text = text[2:]
    if not text or len(text) > 4:
        return None
    try:
        return int(text, 16)
    except ValueError:
        return None


def lookup(vendor_id, device_id):
    """Known adapter for these IDs: ``{"vendor", "model", "family", "vf"}``, or None."""
    vendor = normalize_id(vendor_id)
    device = normalize_id(device_id)
    if vendor is None or device is None:
        return None
    entry = PCI_IDS.get((vendor, device))
    if entry is None:
        return None
    model, family, is_vf = entry
    return {"vendor": VENDORS.get(vendor), "model": model, "family": family, "vf": is_vf}


def model_name(vendor_id, device_id):
    """Model name (``ConnectX-3``) or None when the IDs are not in the table."""
    entry = lookup(vendor_id, device_id)
    return entry["model"] if entry else None
