package harness

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	incusclient "github.com/lxc/incus/v6/client"
	"github.com/lxc/incus/v6/shared/api"

	"github.com/incusops/redis-sentinel-operator/internal/testenv"
)

// LabRemote is the lab incusd seen as a remote Incus host: the HTTPS API
// the lab-host playbook opens on loopback (core.https_address) and the
// certificate incusd presents there, which an IncusHost pins.
type LabRemote struct {
	// URL is https://<core.https_address>.
	URL string
	// ServerCert is incusd's certificate (PEM), the exact pin.
	ServerCert []byte

	// admin is incusd's unix socket, used to manage the trust store.
	admin incusclient.InstanceServer
}

// NewLabRemote reads the lab incusd's HTTPS address and certificate through
// its unix socket ($INCUS_SOCKET, else the default). No unix socket, or no
// HTTPS address, is a testenv.UnavailableError (run `make lab-host`); an
// address that is not loopback is refused, since tests send traffic only
// to loopback.
func NewLabRemote(ctx context.Context) (*LabRemote, error) {
	// The client keeps its context for every later request (the cleanup of
	// TrustedClient included), so it must outlive ctx.
	admin, err := incusclient.ConnectIncusUnixWithContext(context.WithoutCancel(ctx), "", nil)
	if err != nil {
		return nil, &testenv.UnavailableError{Err: fmt.Errorf("incusd unix socket: %w", err)}
	}

	srv, _, err := admin.GetServer()
	if err != nil {
		return nil, &testenv.UnavailableError{Err: fmt.Errorf("incusd unix socket: %w", err)}
	}

	addr := srv.Config["core.https_address"]
	if addr == "" {
		return nil, &testenv.UnavailableError{Err: errors.New("incusd has no HTTPS address (core.https_address); run `make lab-host`")}
	}

	host, _, err := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("incusd's core.https_address %q is not a loopback address:port; tests only reach loopback", addr)
	}

	if srv.Environment.Certificate == "" {
		return nil, errors.New("incusd reports no server certificate")
	}

	return &LabRemote{URL: "https://" + addr, ServerCert: []byte(srv.Environment.Certificate), admin: admin}, nil
}

// TrustedClient creates a client certificate and adds it to incusd's trust
// store under name (which should identify the test run), for t's duration:
// it is removed at cleanup. It returns the certificate and key (PEM), the
// tls.crt and tls.key of an IncusHost's client certificate Secret.
func (r *LabRemote) TrustedClient(t testing.TB, name string) (certPEM, keyPEM []byte) {
	t.Helper()
	return trustedClient(t, name, "incusd", func() (incusclient.InstanceServer, error) { return r.admin, nil })
}

// trustedClient creates a client certificate and adds it to the trust store
// of the server (where names it in messages), removing it at t's cleanup;
// server is asked again for the cleanup (a cluster member may be down by
// then).
func trustedClient(t testing.TB, name, where string, server func() (incusclient.InstanceServer, error)) (certPEM, keyPEM []byte) {
	t.Helper()

	certPEM, keyPEM = testenv.SelfSignedCert(t, name)
	block, _ := pem.Decode(certPEM)

	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}

	s, err := server()
	if err == nil {
		err = s.CreateCertificate(api.CertificatesPost{CertificatePut: api.CertificatePut{
			Name:        name,
			Type:        api.CertificateTypeClient,
			Certificate: base64.StdEncoding.EncodeToString(cert.Raw),
			Description: "redis-sentinel-operator test client, removed when the test ends (" + time.Now().UTC().Format(time.RFC3339) + ")",
		}})
	}
	if err != nil {
		t.Fatalf("adding client certificate %s to %s's trust store: %v", name, where, err)
	}

	fingerprint := sha256.Sum256(cert.Raw)
	t.Cleanup(func() {
		s, err := server()
		if err == nil {
			err = s.DeleteCertificate(hex.EncodeToString(fingerprint[:]))
		}
		if err != nil {
			t.Errorf("removing client certificate %s from %s's trust store: %v", name, where, err)
		}
	})

	return certPEM, keyPEM
}
