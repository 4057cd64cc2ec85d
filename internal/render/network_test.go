package render

import (
	"net/netip"
	"strings"
	"testing"
)

func TestStaticNetwork(t *testing.T) {
	gw := netip.MustParsePrefix("10.77.0.1/24")
	tests := []struct {
		address string
		want    []string
		wantErr bool
	}{
		{address: "10.77.0.2", want: []string{"Name=eth0\n", "Address=10.77.0.2/24\n", "Gateway=10.77.0.1\n", "DNS=10.77.0.1\n"}},
		{address: "10.77.0.254", want: []string{"Address=10.77.0.254/24\n"}},
		{address: "10.77.0.1", wantErr: true}, // the bridge's own
		{address: "10.78.0.2", wantErr: true}, // outside the subnet
		{address: "fd42::2", wantErr: true},   // not IPv4
	}
	for _, tt := range tests {
		got, err := StaticNetwork(netip.MustParseAddr(tt.address), gw)
		if (err != nil) != tt.wantErr {
			t.Fatalf("%s: err = %v, want error %v", tt.address, err, tt.wantErr)
		}
		for _, w := range tt.want {
			if !strings.Contains(string(got), w) {
				t.Errorf("%s: file lacks %q:\n%s", tt.address, w, got)
			}
		}
		if !tt.wantErr && strings.Contains(string(got), "DHCP") {
			t.Errorf("%s: static file asks for DHCP:\n%s", tt.address, got)
		}
	}
}
