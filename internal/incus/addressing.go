package incus

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/lxc/incus/v6/shared/api"
)

// parseAddressing reads the IPv4 plan of a managed bridge from its config
// (ipv4.address, ipv4.dhcp.ranges) and its leases.
func parseAddressing(n *api.Network, leases []api.NetworkLease) (Addressing, error) {
	if n.Type != "bridge" {
		return Addressing{}, fmt.Errorf("%w: %q (type %s)", ErrNotBridged, n.Name, n.Type)
	}
	raw := n.Config["ipv4.address"]
	if !n.Managed || raw == "" || raw == "none" {
		return Addressing{}, fmt.Errorf("%w: %q (type %s, ipv4.address %q)", ErrNoAddressing, n.Name, n.Type, raw)
	}

	gw, err := netip.ParsePrefix(raw)
	if err != nil || !gw.Addr().Is4() {
		return Addressing{}, fmt.Errorf("%w: %q: ipv4.address %q is not an IPv4 address/prefix", ErrNoAddressing, n.Name, raw)
	}

	a := Addressing{Gateway: gw, InUse: []netip.Addr{gw.Addr()}}

	if ranges := n.Config["ipv4.dhcp.ranges"]; ranges != "" {
		for _, r := range strings.Split(ranges, ",") {
			first, last, ok := strings.Cut(strings.TrimSpace(r), "-")
			rng := AddressRange{}
			rng.First, err = netip.ParseAddr(first)
			if err == nil && ok {
				rng.Last, err = netip.ParseAddr(last)
			}
			if err != nil || !ok {
				return Addressing{}, fmt.Errorf("incus: network %q: ipv4.dhcp.ranges %q: %q is not first-last", n.Name, ranges, r)
			}
			a.DHCPRanges = append(a.DHCPRanges, rng)
		}
	}

	for _, l := range leases {
		if addr, err := netip.ParseAddr(l.Address); err == nil && addr.Is4() {
			a.InUse = append(a.InUse, addr)
		}
	}

	return a, nil
}
