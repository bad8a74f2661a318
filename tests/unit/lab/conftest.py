"""Unit tests of the lab's hardware half (lab/hw): importable as ``hw`` without root or FUSE."""
import os
import sys

LAB = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", "lab"))
if LAB not in sys.path:
    sys.path.insert(0, LAB)
