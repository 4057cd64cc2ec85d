// Package certs gives a formation its TLS material: an operator-managed CA
// per formation (Authority), serving certificates per member that carry the
// member's IP address, client certificates for backends and the operator,
// and the validation (Check) of a user-supplied Secret in the cert-manager
// layout. It uses the standard library only and never reads the clock.
package certs

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"strings"
	"time"
)

// clockSkew backdates NotBefore so that a member whose clock lags the
// operator's still accepts a certificate issued a moment ago.
const clockSkew = time.Hour

// Authority is a formation's CA.
type Authority struct {
	Cert    *x509.Certificate
	Key     crypto.Signer
	CertPEM []byte
}

// NewAuthority creates a self-signed ECDSA P-256 CA named commonName, valid
// from now-1h to now+validity. MaxPathLen 0: it signs leaves only, so a
// leaf key that leaks cannot mint further certificates. The key is PKCS#8
// ("PRIVATE KEY"), like every key this package writes.
func NewAuthority(commonName string, now time.Time, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	if validity <= 0 {
		return nil, nil, fmt.Errorf("CA validity %s is not positive", validity)
	}
	return create(&x509.Certificate{
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(validity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
	}, nil, nil)
}

// ParseAuthority reads back what NewAuthority returned. It refuses a
// certificate that is not a CA and a key that is not the certificate's, so
// a mixed-up Secret fails here rather than at the members' handshakes.
func ParseAuthority(certPEM, keyPEM []byte) (*Authority, error) {
	cert, err := Leaf(certPEM)
	if err != nil {
		return nil, fmt.Errorf("the CA certificate: %w", err)
	}
	if !cert.BasicConstraintsValid || !cert.IsCA {
		return nil, fmt.Errorf("the CA certificate %q is not a CA", cert.Subject.CommonName)
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("the CA key: %w", err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, errors.New("the CA key cannot sign")
	}
	if !keyMatches(cert, signer) {
		return nil, fmt.Errorf("the CA key is not the key of the CA certificate %q", cert.Subject.CommonName)
	}
	return &Authority{Cert: cert, Key: signer, CertPEM: pemCert(cert.Raw)}, nil
}

// IssueServing issues a member's certificate for its IP addresses. It
// carries ClientAuth as well as ServerAuth because Redis presents the same
// certificate as a client on replication and sentinel links.
func (a *Authority) IssueServing(commonName string, ips []net.IP, now time.Time, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	return a.issue(&x509.Certificate{
		Subject:     pkix.Name{CommonName: commonName},
		IPAddresses: ips,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}, now, validity)
}

// IssueClient issues a certificate that only authenticates a client
// (backends, the operator) and so cannot serve as a member.
func (a *Authority) IssueClient(commonName string, now time.Time, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	return a.issue(&x509.Certificate{
		Subject:     pkix.Name{CommonName: commonName},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, now, validity)
}

// issue signs tmpl with a fresh key, so that a renewal also rotates the key.
func (a *Authority) issue(tmpl *x509.Certificate, now time.Time, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	if validity <= 0 {
		return nil, nil, fmt.Errorf("certificate validity %s is not positive", validity)
	}
	if !now.Before(a.Cert.NotAfter) {
		return nil, nil, fmt.Errorf("the CA %q expired at %s", a.Cert.Subject.CommonName, stamp(a.Cert.NotAfter))
	}
	tmpl.NotBefore = now.Add(-clockSkew)
	// A leaf outliving its CA would fail verification after the CA expires
	// anyway; capping it makes the renewal time the leaf shows honest.
	tmpl.NotAfter = now.Add(validity)
	if tmpl.NotAfter.After(a.Cert.NotAfter) {
		tmpl.NotAfter = a.Cert.NotAfter
	}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
	tmpl.BasicConstraintsValid = true
	return create(tmpl, a.Cert, a.Key)
}

// create gives tmpl a fresh key and serial number and signs it with
// parentKey as parent (as itself, with its own key, when parent is nil).
func create(tmpl, parent *x509.Certificate, parentKey crypto.Signer) (certPEM, keyPEM []byte, err error) {
	key, keyPEM, err := newKey()
	if err != nil {
		return nil, nil, err
	}
	if tmpl.SerialNumber, err = newSerial(); err != nil {
		return nil, nil, err
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
	if err != nil {
		return nil, nil, fmt.Errorf("signing the certificate for %q: %w", tmpl.Subject.CommonName, err)
	}
	return pemCert(der), keyPEM, nil
}

// Reason is why a certificate bundle is refused; stable CamelCase strings
// used as Kubernetes condition reasons.
type Reason string

const (
	ReasonMalformed         Reason = "CertificateMalformed"         // not PEM, no certificate, key unparsable, empty ca.crt
	ReasonKeyMismatch       Reason = "CertificateKeyMismatch"       // tls.key is not the key of tls.crt
	ReasonExpired           Reason = "CertificateExpired"           // now after NotAfter
	ReasonNotYetValid       Reason = "CertificateNotYetValid"       // now before NotBefore
	ReasonAddressNotCovered Reason = "CertificateAddressNotCovered" // an address is not in the IP SANs
	ReasonNotSignedByCA     Reason = "CertificateNotSignedByCA"     // chain does not verify to ca.crt
	ReasonNoClientAuth      Reason = "CertificateNoClientAuth"      // client auth needed and the EKUs exclude ClientAuth
	ReasonNoServerAuth      Reason = "CertificateNoServerAuth"      // EKUs present and exclude ServerAuth
)

// Problem is a refused bundle: a Reason for the condition and a message that
// names what is wrong. Messages never quote key material, since they end up
// in status and events.
type Problem struct {
	Reason  Reason
	Message string
}

func (p *Problem) Error() string { return p.Message }

func problem(r Reason, format string, args ...any) *Problem {
	return &Problem{Reason: r, Message: fmt.Sprintf(format, args...)}
}

// Bundle is PEM material in the cert-manager layout: CA = ca.crt, Cert =
// tls.crt (leaf first, optional intermediates after it), Key = tls.key.
type Bundle struct {
	CA, Cert, Key []byte
}

// Check validates b as the serving certificate of members at addresses (IP
// literals) at time now, and returns its leaf. A refusal is a *Problem for
// the first check that fails, in this order: parsing, key match, validity
// window, chain to b.CA, extended key usages, addresses; so the reason
// reported is the most basic one and does not flap between runs.
func Check(b Bundle, addresses []string, needClientAuth bool, now time.Time) (*x509.Certificate, error) {
	leaf, err := verify(b, now)
	if err != nil {
		return nil, err
	}
	if !hasUsage(leaf, x509.ExtKeyUsageServerAuth) {
		return nil, problem(ReasonNoServerAuth, "tls.crt (%s) is not for server authentication (its extended key usages exclude serverAuth)", describe(leaf))
	}
	if needClientAuth && !hasUsage(leaf, x509.ExtKeyUsageClientAuth) {
		return nil, problem(ReasonNoClientAuth, "tls.crt (%s) is not for client authentication, which members need for replication and sentinel links (its extended key usages exclude clientAuth)", describe(leaf))
	}

	var missing []string
	for _, a := range addresses {
		if !covers(leaf, a) {
			missing = append(missing, a)
		}
	}
	if len(missing) > 0 {
		return nil, problem(ReasonAddressNotCovered, "tls.crt does not cover %s (%s)", strings.Join(missing, ", "), coverage(leaf))
	}
	return leaf, nil
}

// CheckClient validates b as a client certificate at time now (parsing,
// key match, validity window, chain to b.CA, clientAuth usage), as Check
// does for a serving one.
func CheckClient(b Bundle, now time.Time) (*x509.Certificate, error) {
	leaf, err := verify(b, now)
	if err != nil {
		return nil, err
	}
	if !hasUsage(leaf, x509.ExtKeyUsageClientAuth) {
		return nil, problem(ReasonNoClientAuth, "tls.crt (%s) is not for client authentication (its extended key usages exclude clientAuth)", describe(leaf))
	}
	return leaf, nil
}

// verify is what Check and CheckClient share: the bundle parses, its key
// is the leaf's, the leaf is valid at now and verifies to b.CA.
func verify(b Bundle, now time.Time) (*x509.Certificate, error) {
	if len(bytes.TrimSpace(b.CA)) == 0 {
		return nil, problem(ReasonMalformed, "ca.crt is empty")
	}
	roots, err := parseCerts(b.CA)
	if err != nil {
		return nil, problem(ReasonMalformed, "ca.crt: %v", err)
	}
	chain, err := parseCerts(b.Cert)
	if err != nil {
		return nil, problem(ReasonMalformed, "tls.crt: %v", err)
	}
	leaf := chain[0]
	key, err := parseKey(b.Key)
	if err != nil {
		return nil, problem(ReasonMalformed, "tls.key: %v", err)
	}

	if !keyMatches(leaf, key) {
		return nil, problem(ReasonKeyMismatch, "tls.key is not the key of tls.crt (%s)", describe(leaf))
	}

	if now.After(leaf.NotAfter) {
		return nil, problem(ReasonExpired, "tls.crt expired at %s", stamp(leaf.NotAfter))
	}
	if now.Before(leaf.NotBefore) {
		return nil, problem(ReasonNotYetValid, "tls.crt is not valid before %s", stamp(leaf.NotBefore))
	}

	pool := x509.NewCertPool()
	for _, c := range roots {
		pool.AddCert(c)
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	// ExtKeyUsageAny: the usages are checked below with reasons of their own.
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots:         pool,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}); err != nil {
		return nil, problem(ReasonNotSignedByCA, "tls.crt (%s) does not verify to ca.crt: %v", describe(leaf), err)
	}
	return leaf, nil
}

// Leaf parses the first certificate of a PEM chain.
func Leaf(certPEM []byte) (*x509.Certificate, error) {
	for rest := certPEM; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, errors.New("no PEM certificate")
		}
		if block.Type == "CERTIFICATE" {
			return x509.ParseCertificate(block.Bytes)
		}
	}
}

// Fingerprint is the hex SHA-256 of the leaf's DER, all 64 characters;
// callers shorten it for status.
func Fingerprint(certPEM []byte) (string, error) {
	leaf, err := Leaf(certPEM)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(leaf.Raw)
	return hex.EncodeToString(sum[:]), nil
}

// CombinedPEM returns keyPEM followed by certPEM: one file that Redis reads
// as both tls-cert-file and tls-key-file, so a renewal replaces key and
// certificate in one atomic write and Redis never loads a mismatched pair.
func CombinedPEM(certPEM, keyPEM []byte) []byte {
	out := make([]byte, 0, len(keyPEM)+1+len(certPEM))
	out = append(out, keyPEM...)
	if len(out) > 0 && out[len(out)-1] != '\n' {
		out = append(out, '\n')
	}
	return append(out, certPEM...)
}

func newKey() (*ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generating a key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("encoding the key: %w", err)
	}
	return key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// newSerial is a random positive 128-bit serial, so that two certificates of
// one CA never share one even when issued in the same second.
func newSerial() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 128)
	for {
		n, err := rand.Int(rand.Reader, limit)
		if err != nil {
			return nil, fmt.Errorf("generating a serial number: %w", err)
		}
		if n.Sign() > 0 {
			return n, nil
		}
	}
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// parseCerts reads every CERTIFICATE block of data, skipping other blocks;
// it fails when there is none or one does not parse.
func parseCerts(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %v", len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM certificate")
	}
	return certs, nil
}

// parseKey reads the first private key block of keyPEM in the formats
// cert-manager and openssl write (PKCS#8, SEC 1, PKCS#1). Its errors are
// fixed sentences: a parser's error could echo bytes of the key.
func parseKey(keyPEM []byte) (crypto.PrivateKey, error) {
	for rest := keyPEM; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, errors.New("no PEM private key")
		}
		switch block.Type {
		case "PRIVATE KEY":
			if k, err := x509.ParsePKCS8PrivateKey(block.Bytes); err == nil {
				return k, nil
			}
			return nil, errors.New("the PKCS#8 private key does not parse")
		case "EC PRIVATE KEY":
			if k, err := x509.ParseECPrivateKey(block.Bytes); err == nil {
				return k, nil
			}
			return nil, errors.New("the EC private key does not parse")
		case "RSA PRIVATE KEY":
			if k, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
				return k, nil
			}
			return nil, errors.New("the RSA private key does not parse")
		}
	}
}

func keyMatches(cert *x509.Certificate, key crypto.PrivateKey) bool {
	var pub crypto.PublicKey
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		pub = k.Public()
	case *rsa.PrivateKey:
		pub = k.Public()
	case ed25519.PrivateKey:
		pub = k.Public()
	default:
		return false
	}
	eq, ok := pub.(interface{ Equal(crypto.PublicKey) bool })
	return ok && eq.Equal(cert.PublicKey)
}

// hasUsage reports whether cert may be used for u: a certificate without
// extended key usages may be used for anything.
func hasUsage(cert *x509.Certificate, u x509.ExtKeyUsage) bool {
	if len(cert.ExtKeyUsage) == 0 && len(cert.UnknownExtKeyUsage) == 0 {
		return true
	}
	for _, have := range cert.ExtKeyUsage {
		if have == u || have == x509.ExtKeyUsageAny {
			return true
		}
	}
	return false
}

func covers(cert *x509.Certificate, address string) bool {
	ip := net.ParseIP(address)
	if ip == nil {
		return false
	}
	for _, have := range cert.IPAddresses {
		if have.Equal(ip) {
			return true
		}
	}
	return false
}

// coverage says what cert covers, for a message about what it does not.
func coverage(cert *x509.Certificate) string {
	var names []string
	for _, ip := range cert.IPAddresses {
		names = append(names, ip.String())
	}
	if len(names) == 0 {
		names = append(names, "no IP address")
	}
	if len(cert.DNSNames) > 0 {
		names = append(names, "DNS names "+strings.Join(cert.DNSNames, ", "))
	}
	return "it covers " + strings.Join(names, ", ")
}

func describe(cert *x509.Certificate) string {
	if cert.Subject.CommonName != "" {
		return fmt.Sprintf("CN %q", cert.Subject.CommonName)
	}
	return "serial " + cert.SerialNumber.Text(16)
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }
