package incus

// The pinned-certificate tests run Incus-like HTTPS endpoints on loopback
// (httptest); no real incusd is needed.

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	incusclient "github.com/lxc/incus/v6/client"

	"github.com/incusops/redis-sentinel-operator/internal/testenv"
)

// pinTestName is the name every server certificate of these tests is for.
const pinTestName = "incus.test"

type testCert = testenv.Cert

// issue creates a certificate for pinTestName and 127.0.0.1, signed by
// parent (self-signed when parent is nil). isCA makes it able to sign.
func issue(t *testing.T, cn string, parent *testCert, isCA bool) testCert {
	t.Helper()
	return testenv.IssueCert(t, cn, parent, isCA, []string{pinTestName}, []net.IP{net.IPv4(127, 0, 0, 1)})
}

// incusLikeServer serves GET /1.0 as a trusting incusd would, over TLS
// with the given chain (leaf first), asking for a client certificate as
// incusd does.
func incusLikeServer(t *testing.T, chain ...testCert) *httptest.Server {
	t.Helper()

	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/1.0" {
			http.NotFound(w, r)
			return
		}

		w.Header().Set("Content-Type", "application/json")
		_, _ = fmt.Fprint(w, `{"type":"sync","status":"Success","status_code":200,"metadata":{"api_version":"1.0","auth":"trusted","auth_methods":["tls"],"api_extensions":[],"environment":{"server_version":"6.0.4"}}}`)
	}))

	leaf := tls.Certificate{PrivateKey: chain[0].Key, Leaf: chain[0].Cert}
	for _, c := range chain {
		leaf.Certificate = append(leaf.Certificate, c.Cert.Raw)
	}

	srv.TLS = &tls.Config{Certificates: []tls.Certificate{leaf}, ClientAuth: tls.RequestClientCert}
	srv.StartTLS()
	t.Cleanup(srv.Close)

	return srv
}

// libraryDefaultAccepts reports whether the Incus client, given the pin as
// TLSServerCert and nothing else, connects: what Connect did before exact
// pinning.
func libraryDefaultAccepts(ctx context.Context, url string, pin, clientCert, clientKey []byte) error {
	_, err := do(ctx, func() (incusclient.InstanceServer, error) {
		return incusclient.ConnectIncusWithContext(ctx, url, &incusclient.ConnectionArgs{
			TLSServerCert: string(pin), TLSClientCert: string(clientCert), TLSClientKey: string(clientKey),
		})
	})

	return err
}

func TestConnectAcceptsExactlyThePinnedCertificate(t *testing.T) {
	pinned := issue(t, "pinned", nil, true)
	signedByPin := issue(t, "signed-by-pinned", &pinned, false)
	otherSelfSigned := issue(t, "other", nil, true)
	root := issue(t, "root", nil, true)
	intermediate := issue(t, "intermediate", &root, true)
	chainLeaf := issue(t, "leaf", &intermediate, false)

	clientCert, clientKey := testenv.SelfSignedCert(t, "client")

	for _, c := range []struct {
		name string
		// served is the chain the server presents, leaf first.
		served []testCert
		pin    testCert
		// libraryAccepts: the Incus client alone would connect; the case
		// shows what exact pinning adds.
		libraryAccepts bool
		wantMismatch   bool
	}{
		{name: "exact pinned certificate", served: []testCert{pinned}, pin: pinned, libraryAccepts: true},
		{name: "exact pinned leaf of a chain", served: []testCert{chainLeaf, intermediate}, pin: chainLeaf},
		{name: "signed by the pinned certificate, same name", served: []testCert{signedByPin, pinned}, pin: pinned, libraryAccepts: true, wantMismatch: true},
		{name: "another self-signed certificate for the same name", served: []testCert{otherSelfSigned}, pin: pinned, wantMismatch: true},
		{name: "chain to the pinned root", served: []testCert{chainLeaf, intermediate}, pin: root, libraryAccepts: true, wantMismatch: true},
		{name: "chain with the pinned intermediate", served: []testCert{chainLeaf, intermediate}, pin: intermediate, wantMismatch: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()

			srv := incusLikeServer(t, c.served...)

			if c.libraryAccepts {
				if err := libraryDefaultAccepts(ctx, srv.URL, c.pin.CertPEM(), clientCert, clientKey); err != nil {
					t.Fatalf("the Incus client alone refuses this case, so it shows nothing: %v", err)
				}
			}

			_, err := Connect(ctx, Options{Remote: &Remote{URL: srv.URL, ClientCert: clientCert, ClientKey: clientKey, ServerCert: c.pin.CertPEM()}})
			if !c.wantMismatch {
				if err != nil {
					t.Fatalf("pinned certificate refused: %v", err)
				}

				return
			}

			if !errors.Is(err, ErrServerCertMismatch) {
				t.Fatalf("want ErrServerCertMismatch, got %v", err)
			}

			for what, der := range map[string][]byte{"presented": c.served[0].Cert.Raw, "pinned": c.pin.Cert.Raw} {
				if fp := fmt.Sprintf("%x", sha256.Sum256(der)); !strings.Contains(err.Error(), fp) {
					t.Errorf("error does not name the %s certificate's fingerprint %s: %v", what, fp, err)
				}
			}

			t.Logf("%v", err)
		})
	}
}

// Environment of the child process of TestConnectIgnoresSystemRoots.
const (
	childURLEnv = "RSF_PIN_TEST_URL"
	childPinEnv = "RSF_PIN_TEST_PIN"
)

// TestConnectIgnoresSystemRoots: a server whose certificate the system
// trusts (a root in SSL_CERT_FILE, standing in for a public CA) is refused
// when another certificate for the same name is pinned. The system roots
// are read once per process, so the check runs in a child process that
// starts with SSL_CERT_FILE set.
func TestConnectIgnoresSystemRoots(t *testing.T) {
	if url := os.Getenv(childURLEnv); url != "" {
		connectWithSystemTrustedServer(t, url, []byte(os.Getenv(childPinEnv)))
		return
	}

	publicRoot := issue(t, "public-root", nil, true)
	publicLeaf := issue(t, "public-leaf", &publicRoot, false)
	srv := incusLikeServer(t, publicLeaf)

	dir := t.TempDir()
	rootFile := filepath.Join(dir, "roots.pem")
	if err := os.WriteFile(rootFile, publicRoot.CertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()

	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestConnectIgnoresSystemRoots$", "-test.v")
	cmd.Env = append(os.Environ(),
		childURLEnv+"="+srv.URL,
		childPinEnv+"="+string(issue(t, "pinned", nil, true).CertPEM()),
		"SSL_CERT_FILE="+rootFile,
		"SSL_CERT_DIR="+dir,
	)

	out, err := cmd.CombinedOutput()
	t.Logf("child:\n%s", out)

	if err != nil {
		t.Fatalf("child: %v", err)
	}

	if !strings.Contains(string(out), "--- PASS: TestConnectIgnoresSystemRoots") {
		t.Fatal("the child did not run the check")
	}
}

func connectWithSystemTrustedServer(t *testing.T, url string, pin []byte) {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()

	resp, err := http.Get(url + "/1.0")
	if err != nil {
		t.Fatalf("the server is not trusted through the system roots, so the case shows nothing: %v", err)
	}

	_ = resp.Body.Close()

	clientCert, clientKey := testenv.SelfSignedCert(t, "client")
	if err := libraryDefaultAccepts(ctx, url, pin, clientCert, clientKey); err != nil {
		t.Fatalf("the Incus client alone refuses the system-trusted server, so the case shows nothing: %v", err)
	}

	_, err = Connect(ctx, Options{Remote: &Remote{URL: url, ClientCert: clientCert, ClientKey: clientKey, ServerCert: pin}})
	if !errors.Is(err, ErrServerCertMismatch) {
		t.Fatalf("want ErrServerCertMismatch, got %v", err)
	}

	t.Logf("%v", err)
}
