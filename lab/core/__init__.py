"""lab-core: network-namespace nodes with their own sshd, Open vSwitch and root, joined by bridges.

Entry point: lab/labctl (see docs/lab.md). The hardware half (sysfs profiles, fabric) is lab/hw.
"""
