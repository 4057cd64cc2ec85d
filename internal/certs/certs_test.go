package certs

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

const (
	day  = 24 * time.Hour
	year = 365 * day
)

func newCA(t testing.TB, now time.Time, validity time.Duration) *Authority {
	t.Helper()
	certPEM, keyPEM, err := NewAuthority("formation-ca", now, validity)
	if err != nil {
		t.Fatal(err)
	}
	a, err := ParseAuthority(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func ips(s ...string) []net.IP {
	var out []net.IP
	for _, a := range s {
		out = append(out, net.ParseIP(a))
	}
	return out
}

func TestAuthorityRoundTrip(t *testing.T) {
	certPEM, keyPEM, err := NewAuthority("formation-ca", t0, 10*year)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(keyPEM, []byte("-----BEGIN PRIVATE KEY-----")) {
		t.Errorf("key is not PKCS#8 PEM: %.30q", keyPEM)
	}
	a, err := ParseAuthority(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	c := a.Cert
	if !c.IsCA || !c.BasicConstraintsValid || c.MaxPathLen != 0 || !c.MaxPathLenZero {
		t.Errorf("not a path-length-0 CA: IsCA %v BCV %v MaxPathLen %d zero %v", c.IsCA, c.BasicConstraintsValid, c.MaxPathLen, c.MaxPathLenZero)
	}
	if c.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign {
		t.Errorf("KeyUsage %v", c.KeyUsage)
	}
	if c.Subject.CommonName != "formation-ca" {
		t.Errorf("CommonName %q", c.Subject.CommonName)
	}
	if !c.NotBefore.Equal(t0.Add(-time.Hour)) || !c.NotAfter.Equal(t0.Add(10*year)) {
		t.Errorf("window %s..%s", c.NotBefore, c.NotAfter)
	}
	if _, ok := c.PublicKey.(*ecdsa.PublicKey); !ok || c.PublicKey.(*ecdsa.PublicKey).Curve != elliptic.P256() {
		t.Errorf("not a P-256 key: %T", c.PublicKey)
	}
	if c.SerialNumber.Sign() <= 0 || c.SerialNumber.BitLen() > 128 {
		t.Errorf("serial %v", c.SerialNumber)
	}
	if !bytes.Equal(a.CertPEM, certPEM) {
		t.Error("CertPEM differs from the PEM parsed")
	}
	if err := c.CheckSignatureFrom(c); err != nil {
		t.Errorf("not self-signed: %v", err)
	}
}

func TestParseAuthorityRefuses(t *testing.T) {
	a := newCA(t, t0, year)
	_, otherKey, err := NewAuthority("other", t0, year)
	if err != nil {
		t.Fatal(err)
	}
	leafPEM, leafKey, err := a.IssueServing("m0", ips("10.0.0.1"), t0, day)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name           string
		certPEM, keyPM []byte
	}{
		{"key of another CA", a.CertPEM, otherKey},
		{"leaf is not a CA", leafPEM, leafKey},
		{"garbage cert", []byte("nope"), otherKey},
		{"garbage key", a.CertPEM, []byte("nope")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ParseAuthority(tc.certPEM, tc.keyPM); err == nil {
				t.Fatal("accepted")
			} else if strings.Contains(err.Error(), "PRIVATE KEY") {
				t.Errorf("error quotes key material: %v", err)
			}
		})
	}
}

func TestIssueServing(t *testing.T) {
	a := newCA(t, t0, year)
	certPEM, keyPEM, err := a.IssueServing("member-0", ips("10.77.0.11", "10.77.0.12"), t0, 30*day)
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(certPEM, []byte("BEGIN CERTIFICATE")); n != 1 {
		t.Errorf("certPEM holds %d certificates, want the leaf only", n)
	}
	b := Bundle{CA: a.CertPEM, Cert: certPEM, Key: keyPEM}
	for _, tc := range []struct {
		name      string
		addresses []string
		client    bool
	}{
		{"both addresses, client auth", []string{"10.77.0.11", "10.77.0.12"}, true},
		{"one address", []string{"10.77.0.12"}, false},
		{"no addresses", nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			leaf, err := Check(b, tc.addresses, tc.client, t0)
			if err != nil {
				t.Fatal(err)
			}
			if leaf.Subject.CommonName != "member-0" {
				t.Errorf("CommonName %q", leaf.Subject.CommonName)
			}
		})
	}
	leaf, _ := Leaf(certPEM)
	if len(leaf.DNSNames) != 0 {
		t.Errorf("DNS names %v", leaf.DNSNames)
	}
	if len(leaf.ExtKeyUsage) != 2 || leaf.IsCA {
		t.Errorf("EKUs %v, IsCA %v", leaf.ExtKeyUsage, leaf.IsCA)
	}
	if leaf.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		t.Errorf("KeyUsage %v lacks DigitalSignature", leaf.KeyUsage)
	}
	if !leaf.NotBefore.Equal(t0.Add(-time.Hour)) || !leaf.NotAfter.Equal(t0.Add(30*day)) {
		t.Errorf("window %s..%s", leaf.NotBefore, leaf.NotAfter)
	}

	// A second issue rotates key and serial.
	cert2, key2, err := a.IssueServing("member-0", ips("10.77.0.11"), t0, 30*day)
	if err != nil {
		t.Fatal(err)
	}
	leaf2, _ := Leaf(cert2)
	if bytes.Equal(key2, keyPEM) || leaf2.SerialNumber.Cmp(leaf.SerialNumber) == 0 {
		t.Error("a second issue reused the key or the serial")
	}
}

func TestNotAfterCappedAtCA(t *testing.T) {
	a := newCA(t, t0, 10*day)
	for _, issue := range []func() ([]byte, []byte, error){
		func() ([]byte, []byte, error) { return a.IssueServing("m", ips("10.0.0.1"), t0, year) },
		func() ([]byte, []byte, error) { return a.IssueClient("c", t0, year) },
	} {
		certPEM, _, err := issue()
		if err != nil {
			t.Fatal(err)
		}
		leaf, _ := Leaf(certPEM)
		if !leaf.NotAfter.Equal(a.Cert.NotAfter) {
			t.Errorf("NotAfter %s, CA's %s", leaf.NotAfter, a.Cert.NotAfter)
		}
	}
	if _, _, err := a.IssueServing("m", ips("10.0.0.1"), t0.Add(11*day), day); err == nil {
		t.Error("an expired CA issued a certificate")
	}
}

func TestIssueClient(t *testing.T) {
	a := newCA(t, t0, year)
	certPEM, _, err := a.IssueClient("operator", t0, day)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := Leaf(certPEM)
	if len(leaf.IPAddresses) != 0 || len(leaf.DNSNames) != 0 {
		t.Errorf("client certificate names %v %v", leaf.IPAddresses, leaf.DNSNames)
	}
	if len(leaf.ExtKeyUsage) != 1 || leaf.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth {
		t.Errorf("EKUs %v", leaf.ExtKeyUsage)
	}
}

// TestCheckClient: the client certificate the operator issues passes, and
// is refused once expired, under another CA, or as a server-only leaf
// (the check its renewal relies on: a refusal reissues it).
func TestCheckClient(t *testing.T) {
	a, other := newCA(t, t0, year), newCA(t, t0, year)
	certPEM, keyPEM, err := a.IssueClient("operator", t0, day)
	if err != nil {
		t.Fatal(err)
	}
	serverOnly, serverOnlyKey := signLeaf(t, a, &x509.Certificate{NotBefore: t0, NotAfter: t0.Add(day), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	for _, tc := range []struct {
		name string
		b    Bundle
		at   time.Time
		want Reason
	}{
		{"issued", Bundle{CA: a.CertPEM, Cert: certPEM, Key: keyPEM}, t0.Add(time.Hour), ""},
		{"expired", Bundle{CA: a.CertPEM, Cert: certPEM, Key: keyPEM}, t0.Add(2 * day), ReasonExpired},
		{"another CA", Bundle{CA: other.CertPEM, Cert: certPEM, Key: keyPEM}, t0.Add(time.Hour), ReasonNotSignedByCA},
		{"server only", Bundle{CA: a.CertPEM, Cert: serverOnly, Key: serverOnlyKey}, t0.Add(time.Hour), ReasonNoClientAuth},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := CheckClient(tc.b, tc.at)
			var p *Problem
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (!errors.As(err, &p) || p.Reason != tc.want):
				t.Fatalf("got %v, want %s", err, tc.want)
			}
		})
	}
}

// signLeaf signs a leaf from tmpl with a fresh key, for the shapes the
// Issue functions never produce.
func signLeaf(t *testing.T, a *Authority, tmpl *x509.Certificate) (certPEM, keyPEM []byte) {
	t.Helper()
	certPEM, keyPEM, err := create(tmpl, a.Cert, a.Key)
	if err != nil {
		t.Fatal(err)
	}
	return certPEM, keyPEM
}

func TestCheckReasons(t *testing.T) {
	a := newCA(t, t0.Add(-2*year), 10*year)
	other := newCA(t, t0.Add(-2*year), 10*year)
	addr := []string{"10.77.0.11"}
	issue := func(ca *Authority, ip []net.IP, now time.Time, validity time.Duration) (c, k []byte) {
		c, k, err := ca.IssueServing("member-0", ip, now, validity)
		if err != nil {
			t.Fatal(err)
		}
		return c, k
	}
	good, goodKey := issue(a, ips("10.77.0.11"), t0, 90*day)
	_, anotherKey := issue(a, ips("10.77.0.11"), t0, 90*day)
	expired, expiredKey := issue(a, ips("10.77.0.11"), t0.Add(-year), 90*day)
	future, futureKey := issue(a, ips("10.77.0.11"), t0.Add(30*day), 90*day)
	foreign, foreignKey := issue(other, ips("10.77.0.11"), t0, 90*day)
	wrongIPs, wrongIPsKey := issue(a, ips("10.77.0.13", "10.77.0.14"), t0, 90*day)
	serverOnly, serverOnlyKey := signLeaf(t, a, &x509.Certificate{
		Subject: pkix.Name{CommonName: "server-only"}, IPAddresses: ips("10.77.0.11"),
		NotBefore: t0.Add(-time.Hour), NotAfter: t0.Add(day),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	clientOnly, clientOnlyKey, err := a.IssueClient("operator", t0, day)
	if err != nil {
		t.Fatal(err)
	}
	noEKU, noEKUKey := signLeaf(t, a, &x509.Certificate{
		Subject: pkix.Name{CommonName: "any-usage"}, IPAddresses: ips("10.77.0.11"),
		NotBefore: t0.Add(-time.Hour), NotAfter: t0.Add(day),
	})

	for _, tc := range []struct {
		name       string
		b          Bundle
		addresses  []string
		client     bool
		want       Reason // "" = accepted
		inMessage  string
		unwantedIn string
	}{
		{name: "good", b: Bundle{a.CertPEM, good, goodKey}, addresses: addr, client: true},
		{name: "no EKU means any usage", b: Bundle{a.CertPEM, noEKU, noEKUKey}, addresses: addr, client: true},
		{name: "server-only EKU without client auth", b: Bundle{a.CertPEM, serverOnly, serverOnlyKey}, addresses: addr},
		{name: "key and cert in tls.crt", b: Bundle{a.CertPEM, CombinedPEM(good, goodKey), goodKey}, addresses: addr, client: true},
		{name: "garbage tls.crt", b: Bundle{a.CertPEM, []byte("garbage"), goodKey}, want: ReasonMalformed, inMessage: "tls.crt"},
		{name: "garbage ca.crt", b: Bundle{[]byte("garbage"), good, goodKey}, want: ReasonMalformed, inMessage: "ca.crt"},
		{name: "garbage tls.key", b: Bundle{a.CertPEM, good, []byte("garbage")}, want: ReasonMalformed, inMessage: "tls.key"},
		{name: "corrupt tls.key", b: Bundle{a.CertPEM, good, corruptKey(goodKey)}, want: ReasonMalformed, inMessage: "tls.key", unwantedIn: "PRIVATE KEY"},
		{name: "corrupt DER in tls.crt", b: Bundle{a.CertPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{0x30, 1, 2}}), goodKey}, want: ReasonMalformed, inMessage: "tls.crt"},
		{name: "empty ca.crt", b: Bundle{nil, good, goodKey}, want: ReasonMalformed, inMessage: "ca.crt is empty"},
		{name: "key of another leaf", b: Bundle{a.CertPEM, good, anotherKey}, want: ReasonKeyMismatch, inMessage: "member-0"},
		{name: "expired", b: Bundle{a.CertPEM, expired, expiredKey}, addresses: addr, want: ReasonExpired, inMessage: "expired at " + t0.Add(-year+90*day).Format(time.RFC3339)},
		{name: "not yet valid", b: Bundle{a.CertPEM, future, futureKey}, addresses: addr, want: ReasonNotYetValid, inMessage: t0.Add(30*day - time.Hour).Format(time.RFC3339)},
		{name: "signed by another CA", b: Bundle{a.CertPEM, foreign, foreignKey}, addresses: addr, want: ReasonNotSignedByCA},
		{name: "the CA's own certificate as leaf", b: Bundle{other.CertPEM, a.CertPEM, goodKey}, want: ReasonKeyMismatch},
		{name: "address missing", b: Bundle{a.CertPEM, wrongIPs, wrongIPsKey}, addresses: []string{"10.77.0.11", "10.77.0.13", "10.77.0.12"}, client: true, want: ReasonAddressNotCovered,
			inMessage: "tls.crt does not cover 10.77.0.11, 10.77.0.12 (it covers 10.77.0.13, 10.77.0.14)"},
		{name: "address not an IP", b: Bundle{a.CertPEM, good, goodKey}, addresses: []string{"member-0"}, want: ReasonAddressNotCovered, inMessage: "member-0"},
		{name: "server-only EKU with client auth", b: Bundle{a.CertPEM, serverOnly, serverOnlyKey}, addresses: addr, client: true, want: ReasonNoClientAuth, inMessage: "server-only"},
		{name: "client certificate as server", b: Bundle{a.CertPEM, clientOnly, clientOnlyKey}, want: ReasonNoServerAuth, inMessage: "operator"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			leaf, err := Check(tc.b, tc.addresses, tc.client, t0)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if leaf == nil {
					t.Fatal("no leaf")
				}
				return
			}
			var p *Problem
			if !errors.As(err, &p) {
				t.Fatalf("error %v (%T), want a *Problem", err, err)
			}
			if p.Reason != tc.want {
				t.Errorf("reason %s, want %s (%s)", p.Reason, tc.want, p.Message)
			}
			if p.Error() != p.Message {
				t.Error("Error() is not Message")
			}
			if !strings.Contains(p.Message, tc.inMessage) {
				t.Errorf("message %q lacks %q", p.Message, tc.inMessage)
			}
			if strings.Contains(p.Message, "PRIVATE KEY") || strings.Contains(p.Message, string(tc.b.Key)) && len(tc.b.Key) > 8 {
				t.Errorf("message quotes key material: %q", p.Message)
			}
			if leaf != nil {
				t.Error("a leaf with a refusal")
			}
		})
	}
}

// corruptKey keeps the PEM framing of keyPEM and breaks its DER.
func corruptKey(keyPEM []byte) []byte {
	block, _ := pem.Decode(keyPEM)
	der := append([]byte(nil), block.Bytes...)
	der[len(der)/2] ^= 0xff
	der = der[:len(der)-3]
	return pem.EncodeToMemory(&pem.Block{Type: block.Type, Bytes: der})
}

func TestCheckIntermediate(t *testing.T) {
	root := newCA(t, t0, year)
	// An intermediate CA, as a user's PKI may have; the leaf's chain names it.
	interKey, interKeyPEM, err := newKey()
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := newSerial()
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: "intermediate"},
		NotBefore: t0.Add(-time.Hour), NotAfter: t0.Add(year),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}, root.Cert, interKey.Public(), root.Key)
	if err != nil {
		t.Fatal(err)
	}
	// A CA below a MaxPathLen-0 root must not verify; build the real case
	// from a root without that limit.
	inter, err := ParseAuthority(pemCert(der), interKeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	leaf, leafKey, err := inter.IssueServing("m", ips("10.0.0.1"), t0, day)
	if err != nil {
		t.Fatal(err)
	}
	chain := append(append([]byte(nil), leaf...), inter.CertPEM...)
	_, err = Check(Bundle{root.CertPEM, chain, leafKey}, []string{"10.0.0.1"}, true, t0)
	var p *Problem
	if !errors.As(err, &p) || p.Reason != ReasonNotSignedByCA {
		t.Errorf("an intermediate under a path-length-0 CA: %v", err)
	} else {
		t.Logf("refused as expected: %v", p)
	}

	// A root that allows intermediates, as cert-manager's CA issuers do.
	rootKey, _, _ := newKey()
	serial, _ = newSerial()
	rootTmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: "user-root"},
		NotBefore: t0.Add(-time.Hour), NotAfter: t0.Add(year),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	rootDER, _ := x509.CreateCertificate(rand.Reader, rootTmpl, rootTmpl, rootKey.Public(), rootKey)
	rootCert, _ := x509.ParseCertificate(rootDER)
	serial, _ = newSerial()
	der, _ = x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: "intermediate"},
		NotBefore: t0.Add(-time.Hour), NotAfter: t0.Add(year),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}, rootCert, interKey.Public(), rootKey)
	inter, err = ParseAuthority(pemCert(der), interKeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	leaf, leafKey, _ = inter.IssueServing("m", ips("10.0.0.1"), t0, day)
	chain = append(append([]byte(nil), leaf...), inter.CertPEM...)
	if _, err := Check(Bundle{pemCert(rootDER), chain, leafKey}, []string{"10.0.0.1"}, true, t0); err != nil {
		t.Errorf("leaf + intermediate to root: %v", err)
	}
	if _, err := Check(Bundle{pemCert(rootDER), leaf, leafKey}, []string{"10.0.0.1"}, true, t0); err == nil {
		t.Error("leaf without its intermediate verified")
	}
}

func TestLeafFingerprintCombined(t *testing.T) {
	a := newCA(t, t0, year)
	certPEM, keyPEM, err := a.IssueServing("m", ips("10.0.0.1"), t0, day)
	if err != nil {
		t.Fatal(err)
	}
	chain := append(append([]byte(nil), certPEM...), a.CertPEM...)
	leaf, err := Leaf(chain)
	if err != nil || leaf.Subject.CommonName != "m" {
		t.Fatalf("Leaf: %v %v", leaf, err)
	}
	fp, err := Fingerprint(chain)
	if err != nil || len(fp) != 64 || strings.ToLower(fp) != fp {
		t.Fatalf("Fingerprint %q %v", fp, err)
	}
	if fp2, _ := Fingerprint(certPEM); fp2 != fp {
		t.Error("fingerprint depends on what follows the leaf")
	}
	if fpCA, _ := Fingerprint(a.CertPEM); fpCA == fp {
		t.Error("CA and leaf share a fingerprint")
	}
	if _, err := Fingerprint([]byte("nope")); err == nil {
		t.Error("fingerprint of garbage")
	}

	combined := CombinedPEM(certPEM, keyPEM)
	if !bytes.HasPrefix(combined, keyPEM) || !bytes.HasSuffix(combined, certPEM) {
		t.Error("CombinedPEM is not key then certificate")
	}
	// Both halves read back from the one file, as Redis reads it twice.
	if _, err := tls.X509KeyPair(combined, combined); err != nil {
		t.Errorf("combined file: %v", err)
	}
	if got := CombinedPEM([]byte("C\n"), []byte("K")); string(got) != "K\nC\n" {
		t.Errorf("CombinedPEM without a final newline: %q", got)
	}
}

func TestClientConfig(t *testing.T) {
	a := newCA(t, t0, year)
	certPEM, keyPEM, err := a.IssueClient("operator", t0, day)
	if err != nil {
		t.Fatal(err)
	}
	_, otherKey, _ := a.IssueClient("other", t0, day)
	cfg, err := ClientConfig(a.CertPEM, certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Certificates) != 1 || cfg.RootCAs == nil || cfg.ServerName != "" {
		t.Errorf("config: %d certificates, roots %v, ServerName %q", len(cfg.Certificates), cfg.RootCAs != nil, cfg.ServerName)
	}
	for _, tc := range []struct {
		name      string
		cert, key []byte
	}{
		{"certificate without its key", certPEM, nil},
		{"key without its certificate", nil, keyPEM},
		{"key of another certificate", certPEM, otherKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ClientConfig(a.CertPEM, tc.cert, tc.key)
			if err == nil {
				t.Fatal("accepted")
			}
			if strings.Contains(err.Error(), "PRIVATE KEY") {
				t.Errorf("error quotes the key: %v", err)
			}
		})
	}
}

// TestHandshake runs a real TLS handshake on 127.0.0.1: the member's
// certificate names the IP address, and the client infers ServerName from
// the address it dials, as go-redis does.
func TestHandshake(t *testing.T) {
	now := time.Now() // crypto/tls checks validity against the real clock
	a := newCA(t, now, day)
	serverCert, serverKey, err := a.IssueServing("member-0", ips("127.0.0.1"), now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(CombinedPEM(serverCert, serverKey), CombinedPEM(serverCert, serverKey))
	if err != nil {
		t.Fatal(err)
	}
	clientCAs := x509.NewCertPool()
	clientCAs.AddCert(a.Cert)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{pair},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    clientCAs,
		MinVersion:   tls.VersionTLS12,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				conn.SetDeadline(time.Now().Add(10 * time.Second))
				// Only a client the server accepted reads "ok".
				if conn.(*tls.Conn).Handshake() == nil {
					conn.Write([]byte("ok"))
				}
			}()
		}
	}()

	clientCert, clientKey, err := a.IssueClient("operator", now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	other := newCA(t, now, day)
	for _, tc := range []struct {
		name      string
		ca        []byte
		cert, key []byte
		ok        bool
	}{
		{"formation CA and client certificate", a.CertPEM, clientCert, clientKey, true},
		{"another CA", other.CertPEM, clientCert, clientKey, false},
		{"no client certificate", a.CertPEM, nil, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := ClientConfig(tc.ca, tc.cert, tc.key)
			if err != nil {
				t.Fatal(err)
			}
			conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", ln.Addr().String(), cfg)
			if err == nil {
				defer conn.Close()
				conn.SetDeadline(time.Now().Add(10 * time.Second))
				var got []byte
				got, err = io.ReadAll(conn)
				if err == nil && string(got) != "ok" {
					err = errors.New("the server closed without accepting")
				}
			}
			if tc.ok && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !tc.ok {
				if err == nil {
					t.Fatal("accepted")
				}
				t.Logf("refused as expected: %v", err)
			}
		})
	}
}

// FuzzCheck feeds arbitrary bytes as the bundle: Check must refuse with a
// *Problem, or accept, and never panic.
func FuzzCheck(f *testing.F) {
	a := newCA(f, t0, year)
	cert, key, err := a.IssueServing("m", ips("10.0.0.1"), t0, day)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(a.CertPEM, cert, key)
	f.Add(a.CertPEM, append(cert, a.CertPEM...), key)
	f.Add([]byte("garbage"), []byte("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"), []byte{})
	f.Add(cert, a.CertPEM, key)
	f.Fuzz(func(t *testing.T, ca, cert, key []byte) {
		leaf, err := Check(Bundle{CA: ca, Cert: cert, Key: key}, []string{"10.0.0.1"}, true, t0)
		if err != nil {
			var p *Problem
			if !errors.As(err, &p) {
				t.Fatalf("error %T is not a *Problem", err)
			}
			if leaf != nil {
				t.Fatal("a leaf with a refusal")
			}
		} else if leaf == nil {
			t.Fatal("no leaf and no error")
		}
		Leaf(cert)
		Fingerprint(cert)
	})
}
