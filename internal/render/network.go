package render

import (
	"fmt"
	"net/netip"
)

// NetworkPath is where a member's eth0 configuration lives in the image
// (systemd-networkd); StaticNetwork's file replaces the image's DHCP one.
const NetworkPath = "/etc/systemd/network/10-eth0.network"

// StaticNetwork renders systemd-networkd's configuration of eth0 with a
// fixed address: what the Incus bridge's DHCP server would hand out (the
// address, the bridge as gateway and DNS server), known before the
// container first boots, so that it does not wait for a lease.
func StaticNetwork(address netip.Addr, gateway netip.Prefix) ([]byte, error) {
	if !address.Is4() || !gateway.Addr().Is4() || !gateway.Contains(address) || address == gateway.Addr() {
		return nil, fmt.Errorf("render: network: %s is not a host address of %s", address, gateway)
	}
	return fmt.Appendf(nil, `# Written by the RedisSentinelFormation operator before the container's
# first boot: the address the operator chose for this member, which Incus
# also pins on the bridge (eth0 ipv4.address).
[Match]
Name=eth0

[Network]
Address=%s/%d
Gateway=%s
DNS=%s
LinkLocalAddressing=no
IPv6AcceptRA=no
`, address, gateway.Bits(), gateway.Addr(), gateway.Addr()), nil
}
