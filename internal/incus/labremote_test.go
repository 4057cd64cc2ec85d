package incus_test

// Against the lab incusd's HTTPS API on loopback (core.https_address, set by
// the lab-host playbook); skipped when it is not set up, failed under
// CI=true.

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/incusops/redis-sentinel-operator/internal/incus"
	"github.com/incusops/redis-sentinel-operator/internal/testenv"
	"github.com/incusops/redis-sentinel-operator/test/harness"
)

func TestConnectLabRemote(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()

	lab, err := harness.NewLabRemote(ctx)
	if err != nil {
		testenv.Check(t, "the lab incusd's HTTPS API", err)
	}

	trustedCert, trustedKey := lab.TrustedClient(t, fmt.Sprintf("rsf-itest-remote-%04x", rand.IntN(0xffff)))
	untrustedCert, untrustedKey := testenv.SelfSignedCert(t, "rsf-itest-untrusted")
	otherServerCert, _ := testenv.SelfSignedCert(t, "incus")

	// An address nothing listens on, as a cluster member that is down.
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	down := fmt.Sprintf("https://127.0.0.1:%d", port)

	for _, c := range []struct {
		name   string
		remote incus.Remote
		want   error
	}{
		{"trusted client, exact pin", incus.Remote{URL: lab.URL, ClientCert: trustedCert, ClientKey: trustedKey, ServerCert: lab.ServerCert}, nil},
		{"first address down, the fallback answers", incus.Remote{URL: down, FallbackURLs: []string{lab.URL}, ClientCert: trustedCert, ClientKey: trustedKey, ServerCert: lab.ServerCert}, nil},
		{"first address down, the fallback refuses the client", incus.Remote{URL: down, FallbackURLs: []string{lab.URL}, ClientCert: untrustedCert, ClientKey: untrustedKey, ServerCert: lab.ServerCert}, incus.ErrNotTrusted},
		{"untrusted client", incus.Remote{URL: lab.URL, ClientCert: untrustedCert, ClientKey: untrustedKey, ServerCert: lab.ServerCert}, incus.ErrNotTrusted},
		{"wrong pin", incus.Remote{URL: lab.URL, ClientCert: trustedCert, ClientKey: trustedKey, ServerCert: otherServerCert}, incus.ErrServerCertMismatch},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, err := incus.Connect(ctx, incus.Options{Remote: &c.remote})
			if c.want != nil {
				if !errors.Is(err, c.want) {
					t.Fatalf("want %v, got %v", c.want, err)
				}

				t.Logf("%v", err)

				return
			}

			if err != nil {
				t.Fatalf("connect: %v", err)
			}

			remoteInstanceRoundTrip(t, s)
		})
	}
}

// remoteInstanceRoundTrip creates a container over s, writes a file into it
// and execs in it (the websockets of exec and the file API go through the
// pinned transport too), and deletes it.
func remoteInstanceRoundTrip(t *testing.T, s incus.Server) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	name := fmt.Sprintf("rsf-itest-remote-%04x", rand.IntN(0xffff))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()

		if err := s.DeleteInstance(ctx, name); err != nil {
			t.Errorf("deleting %s: %v", name, err)
		}
	})

	err := s.CreateInstance(ctx, incus.InstanceSpec{Name: name, Image: "rsf-redis7-bookworm-v1", Profiles: []string{"rsf-redis"}, Config: map[string]string{"user.rsf.itest": name}})
	if err != nil {
		t.Fatalf("create over HTTPS: %v", err)
	}

	if err := s.WriteFile(ctx, name, "/tmp/pinned", []byte(name), 0o600, 0, 0); err != nil {
		t.Fatalf("write file over HTTPS: %v", err)
	}

	r, err := s.Exec(ctx, name, []string{"cat", "/tmp/pinned"})
	if err != nil || r.ExitCode != 0 || r.Stdout != name {
		t.Fatalf("exec over HTTPS: %+v, %v", r, err)
	}
}
