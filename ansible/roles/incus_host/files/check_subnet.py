#!/usr/bin/env python3
"""Preflight check of the Incus bridge subnet (read-only).

Usage: check_subnet.py ADDRESS/PREFIX BRIDGE

Reads the host's IPv4 addresses (`ip -o -4 addr show`) and routes
(`ip -o -4 route show table main`) and reports, as one JSON object on stdout,
whether ADDRESS/PREFIX can be given to the managed bridge BRIDGE:
  {"ok": true|false, "errors": [...], "network": "10.77.0.0/24"}
An address collides when its subnet overlaps the wanted one, unless it is
BRIDGE itself already owning exactly ADDRESS/PREFIX (a re-run). Routes on
BRIDGE, the default route and routes of interfaces already reported are
ignored. Exit status is 0 unless the check
itself could not run.
"""
import ipaddress
import json
import subprocess
import sys


def ip_lines(*args):
    out = subprocess.run(["ip", "-o", "-4", *args], check=True,
                         capture_output=True, text=True).stdout
    return [line.split() for line in out.splitlines() if line.strip()]


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    wanted, bridge = sys.argv[1], sys.argv[2]
    errors = []
    collided = set()  # interfaces already reported for an address
    try:
        iface = ipaddress.IPv4Interface(wanted)
    except ValueError as exc:
        print(json.dumps({"ok": False, "errors": [
            f"incus_bridge_ipv4_address '{wanted}' is not an IPv4 address/prefix "
            f"such as 10.77.0.1/24 ({exc})"]}))
        return 0
    net = iface.network
    if "/" not in wanted:
        errors.append(f"incus_bridge_ipv4_address '{wanted}' has no prefix length; write it as e.g. 10.77.0.1/24")
    if not 8 <= net.prefixlen <= 30:
        errors.append(f"incus_bridge_ipv4_address '{wanted}': prefix /{net.prefixlen} is outside /8../30")
    elif iface.ip in (net.network_address, net.broadcast_address):
        errors.append(f"incus_bridge_ipv4_address '{wanted}' is the network or broadcast address of {net}; use a host address such as {next(net.hosts())}/{net.prefixlen}")

    for fields in ip_lines("addr", "show"):
        # "4: eth0    inet 192.0.2.2/24 brd 192.0.2.255 scope global eth0 ..."
        if "inet" not in fields:
            continue
        name = fields[1].split("@", 1)[0]
        other = ipaddress.IPv4Interface(fields[fields.index("inet") + 1])
        if name == bridge and other == iface:
            continue  # the bridge already owns exactly this address
        if other.network.overlaps(net):
            errors.append(f"subnet {net} collides with address {other} on interface {name}")
            collided.add(name)

    for fields in ip_lines("route", "show", "table", "main"):
        # "192.0.2.0/24 dev eth0 proto kernel scope link src 192.0.2.2"
        dest = fields[0]
        dev = fields[fields.index("dev") + 1] if "dev" in fields else ""
        if dest == "default" or dev == bridge or dev in collided:
            continue
        try:
            route = ipaddress.IPv4Network(dest, strict=False)
        except ValueError:
            continue
        if route.overlaps(net):
            errors.append(f"subnet {net} collides with route {route} via {dev or '?'}")

    print(json.dumps({"ok": not errors, "errors": errors, "network": str(net)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
