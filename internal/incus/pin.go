package incus

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"

	incusclient "github.com/lxc/incus/v6/client"
)

// parsePinnedCert returns the DER bytes of the single PEM certificate
// pinned for a remote.
func parsePinnedCert(pemBytes []byte) ([]byte, error) {
	block, rest := pem.Decode(pemBytes)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("not a PEM CERTIFICATE")
	}

	if next, _ := pem.Decode(rest); next != nil {
		return nil, errors.New("more than one PEM block; pin exactly the server's own certificate")
	}

	if _, err := x509.ParseCertificate(block.Bytes); err != nil {
		return nil, err
	}

	return block.Bytes, nil
}

// pinTo returns a TransportWrapper for the Incus client that accepts only a
// server whose leaf certificate is byte for byte pinnedDER. The client on
// its own adds the pinned certificate to the system roots and checks the
// name, which would also accept a publicly trusted certificate for the same
// name, or one signed by the pinned certificate. With
// ConnectionArgs.IdenticalCertificate the client skips chain and name
// verification (expiry included: the pin is the trust), so this check,
// which runs inside every TLS handshake (HTTPS requests and the websockets
// of exec and file transfers alike), is the only one.
func pinTo(pinnedDER []byte) func(*http.Transport) incusclient.HTTPTransporter {
	return func(t *http.Transport) incusclient.HTTPTransporter {
		t.TLSClientConfig.VerifyPeerCertificate = func(rawCerts [][]byte, _ [][]*x509.Certificate) error {
			if len(rawCerts) == 0 {
				return fmt.Errorf("%w: the server presented no certificate", ErrServerCertMismatch)
			}

			if !bytes.Equal(rawCerts[0], pinnedDER) {
				return fmt.Errorf("%w: presented SHA-256 %x, pinned SHA-256 %x", ErrServerCertMismatch, sha256.Sum256(rawCerts[0]), sha256.Sum256(pinnedDER))
			}

			return nil
		}

		return transporter{t}
	}
}

// transporter is the *http.Transport the client built, as the
// HTTPTransporter a TransportWrapper must return.
type transporter struct{ t *http.Transport }

func (p transporter) RoundTrip(r *http.Request) (*http.Response, error) { return p.t.RoundTrip(r) }

func (p transporter) Transport() *http.Transport { return p.t }
