package render

import (
	"fmt"
	"net/netip"
)

// NetworkPath is where a member's eth0 configuration lives in the image
// (systemd-networkd), rendered by Incus from the image's template when the
// container is created.
const NetworkPath = "/etc/systemd/network/10-eth0.network"

// The instance config keys the image's eth0 template
// (ansible/roles/redis_image/files/image/eth0-network.tpl) reads: with
// them eth0 gets a static address, without them DHCP.
const (
	KeyNetworkAddress = "user.rsf.network.address"
	KeyNetworkGateway = "user.rsf.network.gateway"
)

// StaticNetwork is the instance configuration that gives a container a
// fixed address from its first boot: what the Incus bridge's DHCP server
// would hand out (the address, the bridge as gateway and DNS server),
// known before the container exists, so that it does not wait for a lease.
// Incus renders it into NetworkPath when it creates the container, without
// touching the container's file system from outside (writing a file into
// a stopped container costs Incus more than the whole create and boot).
func StaticNetwork(address netip.Addr, gateway netip.Prefix) (map[string]string, error) {
	if !address.Is4() || !gateway.Addr().Is4() || !gateway.Contains(address) || address == gateway.Addr() {
		return nil, fmt.Errorf("render: network: %s is not a host address of %s", address, gateway)
	}
	return map[string]string{
		KeyNetworkAddress: netip.PrefixFrom(address, gateway.Bits()).String(),
		KeyNetworkGateway: gateway.Addr().String(),
	}, nil
}
