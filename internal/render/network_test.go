package render

import (
	"maps"
	"net/netip"
	"testing"
)

func TestStaticNetwork(t *testing.T) {
	gw := netip.MustParsePrefix("10.77.0.1/24")
	tests := []struct {
		address string
		want    map[string]string
	}{
		{address: "10.77.0.2", want: map[string]string{KeyNetworkAddress: "10.77.0.2/24", KeyNetworkGateway: "10.77.0.1"}},
		{address: "10.77.0.254", want: map[string]string{KeyNetworkAddress: "10.77.0.254/24", KeyNetworkGateway: "10.77.0.1"}},
		{address: "10.77.0.1"}, // the bridge's own
		{address: "10.78.0.2"}, // outside the subnet
		{address: "fd42::2"},   // not IPv4
	}
	for _, tt := range tests {
		got, err := StaticNetwork(netip.MustParseAddr(tt.address), gw)
		if (err != nil) != (tt.want == nil) {
			t.Fatalf("%s: err = %v, want error %v", tt.address, err, tt.want == nil)
		}
		if !maps.Equal(got, tt.want) {
			t.Errorf("%s: config %v, want %v", tt.address, got, tt.want)
		}
	}
}
