// Package testenv starts the real kube-apiserver + etcd (envtest) for tests and
// applies the project's rule for missing components: under CI=true a test
// that needs a component fails when it cannot be brought up; elsewhere it is
// skipped with the reason.
package testenv

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"github.com/incusops/redis-sentinel-operator/internal/certs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"testing"
	"time"

	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
)

// InCI reports whether the run is a CI run, where missing components are
// failures rather than skips.
func InCI() bool { return os.Getenv("CI") == "true" }

// TB is the part of testing.TB that Unavailable needs; testing.M users pass
// a MainReporter.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	Skipf(format string, args ...any)
}

// Unavailable fails the test under CI and skips it elsewhere.
func Unavailable(t TB, component string, err error) {
	t.Helper()
	if InCI() {
		t.Fatalf("%s is required under CI=true but cannot be used: %v", component, err)
	}
	t.Skipf("%s unavailable, skipping (run `make test` to set it up): %v", component, err)
}

// RepoRoot is the module root, found from this file's location.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// AssetsDir finds the folder with kube-apiserver and etcd: KUBEBUILDER_ASSETS
// when set (the Makefile sets it from hack/envtest-bins.sh), else the newest
// build cached under bin/k8s.
func AssetsDir() (string, error) {
	if dir := os.Getenv("KUBEBUILDER_ASSETS"); dir != "" {
		return dir, checkAssets(dir)
	}
	dirs, _ := filepath.Glob(filepath.Join(RepoRoot(), "bin", "k8s", "*"))
	sort.Sort(sort.Reverse(sort.StringSlice(dirs)))
	for _, dir := range dirs {
		if checkAssets(dir) == nil {
			return dir, nil
		}
	}
	return "", fmt.Errorf("no kube-apiserver+etcd found: set KUBEBUILDER_ASSETS or run hack/envtest-bins.sh")
}

func checkAssets(dir string) error {
	for _, bin := range []string{"kube-apiserver", "etcd"} {
		if _, err := os.Stat(filepath.Join(dir, bin)); err != nil {
			return fmt.Errorf("%s missing in %s: %w", bin, dir, err)
		}
	}
	return nil
}

// UnavailableError says a component could not be brought up; anything else
// Start returns (a CRD the API server refuses, say) is a defect to fail on.
type UnavailableError struct{ Err error }

func (e *UnavailableError) Error() string { return e.Err.Error() }
func (e *UnavailableError) Unwrap() error { return e.Err }

// Check fails or skips t for err from Start: Unavailable for an
// UnavailableError, a plain failure for anything else; nothing for nil.
func Check(t TB, component string, err error) {
	t.Helper()
	if err == nil {
		return
	}
	var unavailable *UnavailableError
	if errors.As(err, &unavailable) {
		Unavailable(t, component, err)
		return
	}
	t.Fatalf("%s: %v", component, err)
}

// Start starts an API server, then installs the project's CRDs. configure,
// if any, adjust the environment before it starts (where the API server
// listens, its flags).
func Start(configure ...func(*envtest.Environment)) (*envtest.Environment, *rest.Config, error) {
	dir, err := AssetsDir()
	if err != nil {
		return nil, nil, &UnavailableError{err}
	}
	env := &envtest.Environment{BinaryAssetsDirectory: dir}
	for _, c := range configure {
		c(env)
	}
	cfg, err := env.Start()
	if err != nil {
		return nil, nil, &UnavailableError{fmt.Errorf("starting kube-apiserver and etcd from %s: %w", dir, err)}
	}
	if _, err := envtest.InstallCRDs(cfg, envtest.CRDInstallOptions{
		Paths:              []string{filepath.Join(RepoRoot(), "config", "crd", "bases")},
		ErrorIfPathMissing: true,
	}); err != nil {
		_ = env.Stop()
		return nil, nil, fmt.Errorf("installing the CRDs: %w", err)
	}
	if err := CreateLabHost(cfg); err != nil {
		_ = env.Stop()
		return nil, nil, err
	}
	return env, cfg, nil
}

// LabHost is the name of the lab's IncusHost (the sample CreateLabHost
// creates).
const LabHost = "local"

// CreateLabHost creates the lab's default IncusHost from the sample that
// `make lab` applies (config/samples), so tests place formations as users
// of the lab do.
func CreateLabHost(cfg *rest.Config) error {
	raw, err := os.ReadFile(filepath.Join(RepoRoot(), "config", "samples", "redis_v1alpha1_incushost.yaml"))
	if err != nil {
		return err
	}
	host := &redisv1alpha1.IncusHost{}
	if err := yaml.UnmarshalStrict(raw, host); err != nil {
		return fmt.Errorf("reading the sample IncusHost: %w", err)
	}
	if host.Name != LabHost {
		return fmt.Errorf("the sample IncusHost is %q, the tests expect %q", host.Name, LabHost)
	}
	scheme := k8sruntime.NewScheme()
	if err := redisv1alpha1.AddToScheme(scheme); err != nil {
		return err
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return err
	}
	if err := c.Create(context.Background(), host); client.IgnoreAlreadyExists(err) != nil {
		return fmt.Errorf("creating the lab's IncusHost: %w", err)
	}
	return nil
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Cert is a test certificate and its key.
type Cert struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
}

// CertPEM is the certificate in PEM.
func (c Cert) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Cert.Raw})
}

// KeyPEM is the key in PEM.
func (c Cert) KeyPEM(t testing.TB) []byte {
	t.Helper()
	der, err := x509.MarshalECPrivateKey(c.Key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
}

// IssueCert creates a client and server certificate for cn valid for
// dnsNames and ips, signed by parent (self-signed when nil); isCA makes it
// able to sign others.
func IssueCert(t testing.TB, cn string, parent *Cert, isCA bool, dnsNames []string, ips []net.IP) Cert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  isCA,
		DNSNames:              dnsNames,
		IPAddresses:           ips,
	}
	signer, signerKey := tmpl, key
	if parent != nil {
		signer, signerKey = parent.Cert, parent.Key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return Cert{Cert: cert, Key: key}
}

// SelfSignedCert returns a PEM certificate and EC key for cn, usable as a
// client or server certificate in tests.
func SelfSignedCert(t testing.TB, cn string) (certPEM, keyPEM []byte) {
	t.Helper()
	c := IssueCert(t, cn, nil, false, []string{cn}, nil)
	return c.CertPEM(), c.KeyPEM(t)
}

// CA is a CA tests issue certificates from as a user's issuer would, with
// the operator's own issuing code (internal/certs).
type CA struct{ *certs.Authority }

// NewCA creates a CA called name, valid from notBefore for ten years.
func NewCA(t testing.TB, name string, notBefore time.Time) CA {
	t.Helper()
	certPEM, keyPEM, err := certs.NewAuthority(name, notBefore, 10*365*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	a, err := certs.ParseAuthority(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return CA{a}
}

// Serving issues a serving certificate for addresses (IP literals), valid
// from issued for validity.
func (ca CA) Serving(t testing.TB, addresses []string, issued time.Time, validity time.Duration) (certPEM, keyPEM []byte) {
	t.Helper()
	var ips []net.IP
	for _, a := range addresses {
		ips = append(ips, net.ParseIP(a))
	}
	certPEM, keyPEM, err := ca.IssueServing("members", ips, issued, validity)
	if err != nil {
		t.Fatal(err)
	}
	return certPEM, keyPEM
}
