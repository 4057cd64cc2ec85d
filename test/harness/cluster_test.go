package harness

import (
	"context"
	"testing"
	"time"

	incusclient "github.com/lxc/incus/v6/client"

	"github.com/incusops/redis-sentinel-operator/internal/testenv"
)

// TestClusterLab checks the harness against the real cluster lab: three
// members online, a client certificate it trusts works on every member,
// and instance lookups answer. Skipped without the lab (fails under CI).
func TestClusterLab(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	lab, err := NewClusterLab(ctx)
	if err != nil {
		testenv.Check(t, "cluster lab (make lab-cluster)", err)
	}
	if err := lab.WaitMembersOnline(ctx); err != nil {
		t.Fatal(err)
	}
	members, err := lab.Members(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(members) != 3 || len(lab.URLs) != 3 {
		t.Fatalf("members %v at %v, want three", members, lab.URLs)
	}

	cert, key := lab.TrustedClient(t, "rsf-harness-test")
	for _, url := range lab.URLs {
		c, err := incusclient.ConnectIncusWithContext(ctx, url, &incusclient.ConnectionArgs{
			TLSServerCert: string(lab.ServerCert), IdenticalCertificate: true,
			TLSClientCert: string(cert), TLSClientKey: string(key),
		})
		if err != nil {
			t.Fatalf("%s with the trusted test client: %v", url, err)
		}
		srv, _, err := c.GetServer()
		if err != nil {
			t.Fatal(err)
		}
		if srv.Auth != "trusted" {
			t.Fatalf("%s: auth %q with the test client, want trusted", url, srv.Auth)
		}
	}

	locations, err := lab.InstanceLocations(ctx, "user.rsf.harness-test", "none")
	if err != nil {
		t.Fatal(err)
	}
	if len(locations) != 0 {
		t.Fatalf("instances with user.rsf.harness-test=none: %v", locations)
	}
}
