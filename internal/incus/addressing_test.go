package incus

import (
	"errors"
	"fmt"
	"testing"

	"github.com/lxc/incus/v6/shared/api"
)

func TestParseAddressing(t *testing.T) {
	bridge := func(config map[string]string) *api.Network {
		return &api.Network{Name: "rsfbr0", Type: "bridge", Managed: true, NetworkPut: api.NetworkPut{Config: config}}
	}
	leases := []api.NetworkLease{
		{Address: "10.77.0.1", Type: "gateway"},
		{Address: "10.77.0.7", Type: "static"},
		{Address: "fd42::7", Type: "static"},
		{Address: "10.77.0.150", Type: "dynamic"},
	}
	tests := []struct {
		name    string
		network *api.Network
		want    string // fmt of gateway, ranges, in use
		noAddr  bool
		// notBridged: not a bridge at all, so no address can be pinned.
		notBridged bool
		wantErr    bool
	}{
		{name: "whole subnet", network: bridge(map[string]string{"ipv4.address": "10.77.0.1/24"}),
			want: "10.77.0.1/24 [] [10.77.0.1 10.77.0.1 10.77.0.7 10.77.0.150]"},
		{name: "dhcp ranges", network: bridge(map[string]string{"ipv4.address": "10.77.0.1/24", "ipv4.dhcp.ranges": "10.77.0.100-10.77.0.199, 10.77.0.210-10.77.0.220"}),
			want: "10.77.0.1/24 [{10.77.0.100 10.77.0.199} {10.77.0.210 10.77.0.220}] [10.77.0.1 10.77.0.1 10.77.0.7 10.77.0.150]"},
		{name: "bad range", network: bridge(map[string]string{"ipv4.address": "10.77.0.1/24", "ipv4.dhcp.ranges": "10.77.0.100"}), wantErr: true},
		{name: "no ipv4", network: bridge(map[string]string{"ipv4.address": "none"}), noAddr: true},
		{name: "unset ipv4", network: bridge(nil), noAddr: true},
		{name: "ipv6 only", network: bridge(map[string]string{"ipv4.address": "fd42::1/64"}), noAddr: true},
		{name: "macvlan", network: &api.Network{Name: "mv", Type: "macvlan", Managed: true}, notBridged: true},
		{name: "unmanaged bridge", network: &api.Network{Name: "br0", Type: "bridge", NetworkPut: api.NetworkPut{Config: map[string]string{"ipv4.address": "10.0.0.1/24"}}}, noAddr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := parseAddressing(tt.network, leases)
			switch {
			case tt.notBridged:
				if !errors.Is(err, ErrNotBridged) || errors.Is(err, ErrNoAddressing) {
					t.Fatalf("err = %v, want ErrNotBridged", err)
				}
			case tt.noAddr:
				if !errors.Is(err, ErrNoAddressing) {
					t.Fatalf("err = %v, want ErrNoAddressing", err)
				}
			case tt.wantErr:
				if err == nil || errors.Is(err, ErrNoAddressing) {
					t.Fatalf("err = %v, want a parse error", err)
				}
			case err != nil:
				t.Fatal(err)
			default:
				if got := fmt.Sprint(a.Gateway, a.DHCPRanges, a.InUse); got != tt.want {
					t.Errorf("got %s, want %s", got, tt.want)
				}
			}
		})
	}
}

// TestFromAPIKeepsUnreadableConfig: an instance on an offline cluster
// member comes without config, which must stay told apart from an empty
// one (the operator then recognises it by name only).
func TestFromAPIKeepsUnreadableConfig(t *testing.T) {
	if got := fromAPI(&api.Instance{Name: "lost", Status: "Error", Location: "cache-02"}); got.Config != nil || got.Devices != nil || got.Location != "cache-02" {
		t.Errorf("instance on an offline member: %+v, want nil config and devices", got)
	}
	if got := fromAPI(&api.Instance{InstancePut: api.InstancePut{Config: map[string]string{}}}); got.Config == nil || got.Devices == nil {
		t.Errorf("instance with an empty config: %+v, want empty, not nil, config and devices", got)
	}
}
