package certs

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
)

// ClientConfig is the TLS configuration a client of a formation dials its
// redis-servers and sentinels with: it trusts caPEM only (the system roots
// when caPEM is empty) and presents certPEM/keyPEM when given (for
// tls-auth-clients). ServerName is left empty on purpose: go-redis dials
// through tls.DialWithDialer, which sets it to the host of the address
// dialed, so every member's certificate is checked against the IP address
// the client reached it at, also after a failover moved the master.
func ClientConfig(caPEM, certPEM, keyPEM []byte) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if len(caPEM) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(caPEM) {
			return nil, errors.New("the CA holds no PEM certificate")
		}
		cfg.RootCAs = pool
	}
	if (len(certPEM) > 0) != (len(keyPEM) > 0) {
		return nil, errors.New("a client certificate needs both its certificate and its key")
	}
	if len(certPEM) > 0 {
		pair, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			// tls's errors never quote the key.
			return nil, fmt.Errorf("the client certificate and key: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}
