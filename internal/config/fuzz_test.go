package config

import (
	"net"
	"strings"
	"testing"

	"github.com/incusops/redis-sentinel-operator/internal/certs"
)

// FuzzFromMap: any REDIS_* values either parse into a usable config or give
// an error that names a variable and never quotes a password or a client key.
func FuzzFromMap(f *testing.F) {
	f.Add("redis://:pw-123@dummy:6379/0", "10.0.0.1:26379, 10.0.0.2:26379,", "mymaster", "", "spw-456", "", "", "")
	f.Add("redis://:p%40ss@host:6379/2", "", "", "", "", "", "", "")
	f.Add("redis://:\n@x:1/0", "a:b:c", "m y", "u\tspw-789", "s\"pw", "", "", "")
	f.Add("rediss://user:secret@[::1]:6380/15", "[::1]:26379", "m-1.x", "backend", "", "", "", "")
	f.Add("redis://app:pw-123@dummy:6379/0", "10.0.0.1:26379", "mymaster", "app", "spw-456", "", "", "")
	p := newTLSPEMs(f)
	ca, cert, key, otherKey := string(p.ca), string(p.cert), string(p.key), string(p.otherKey)
	f.Add("rediss://:pw-123@dummy:6379/0", "10.0.0.1:26379", "mymaster", "app", "spw-456", ca, cert, key)
	f.Add("", "10.0.0.1:26379", "mymaster", "", "", ca, "", "")
	f.Add("redis://:pw-123@dummy:6379/0", "10.0.0.1:26379", "mymaster", "", "", ca, cert, key)
	f.Add("rediss://h:1/0", "", "", "", "", key, key, cert)
	f.Add("rediss://h:1/0", "", "", "", "", ca, cert, otherKey)
	f.Add("rediss://h:1/0", "", "", "", "", "", "", key)
	f.Add("rediss://h:1/0", "", "", "", "", ca, cert, "-----BEGIN PRIVATE KEY-----\nczNjcjN0LVBhNTV3MHJk\n-----END PRIVATE KEY-----\n")
	f.Fuzz(func(t *testing.T, url, addrs, master, sentinelUsername, sentinelPassword, caPEM, certPEM, keyPEM string) {
		cfg, err := FromMap(map[string]string{
			EnvURL: url, EnvSentinelAddrs: addrs, EnvMasterName: master, EnvSentinelUsername: sentinelUsername, EnvSentinelPassword: sentinelPassword,
			EnvTLSCACert: caPEM, EnvTLSClientCert: certPEM, EnvTLSClientKey: keyPEM,
		})
		if err != nil {
			msg := err.Error()
			if !strings.Contains(msg, "REDIS_") {
				t.Fatalf("error names no variable: %q", msg)
			}
			for _, secret := range []string{sentinelPassword, passwordOf(url)} {
				if len(secret) >= 4 && strings.Contains(msg, secret) {
					t.Fatalf("error quotes a password: %q", msg)
				}
			}
			// Only key text no other variable holds: those may be echoed.
			others := strings.Join([]string{url, addrs, master, sentinelUsername, sentinelPassword, caPEM, certPEM}, "\n")
			for _, tok := range keyTokens([]byte(keyPEM)) {
				if !strings.Contains(others, tok) && strings.Contains(msg, tok) {
					t.Fatalf("error quotes the client key: %q", msg)
				}
			}
			return
		}
		if (cfg.TLSClientCert != nil) != (cfg.TLSClientKey != nil) {
			t.Fatal("a client certificate without its key, or a key without its certificate")
		}
		if (cfg.TLSCACert != nil || cfg.TLSClientCert != nil) && !cfg.TLS {
			t.Fatal("TLS variables accepted without TLS")
		}
		if _, err := certs.ClientConfig(cfg.TLSCACert, cfg.TLSClientCert, cfg.TLSClientKey); err != nil {
			t.Fatalf("accepted TLS variables the client cannot use: %v", err)
		}
		for _, a := range cfg.SentinelAddrs {
			if _, _, err := net.SplitHostPort(a); err != nil || strings.TrimSpace(a) != a || a == "" {
				t.Fatalf("accepted a bad sentinel address %q", a)
			}
		}
		if cfg.SentinelMode() && cfg.MasterName == "" {
			t.Fatal("sentinel mode without a master name")
		}
		if cfg.SentinelMode() && cfg.SentinelUsername != "" {
			if cfg.SentinelPassword == "" {
				t.Fatal("sentinel user without a sentinel password")
			}
			if strings.ContainsFunc(cfg.SentinelUsername, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
				t.Fatalf("accepted a sentinel user name with whitespace or control characters: %q", cfg.SentinelUsername)
			}
		}
		// The description does not depend on the passwords' values.
		other := cfg
		other.Password, other.SentinelPassword = redactProbe(cfg.Password), redactProbe(cfg.SentinelPassword)
		other.TLSCACert, other.TLSClientCert, other.TLSClientKey = pemProbe(cfg.TLSCACert), pemProbe(cfg.TLSClientCert), pemProbe(cfg.TLSClientKey)
		if cfg.String() != other.String() {
			t.Fatalf("String() depends on a password's or a PEM's value: %q vs %q", cfg.String(), other.String())
		}
	})
}

// redactProbe is another non-empty password for a non-empty one.
func redactProbe(p string) string {
	if p == "" {
		return ""
	}
	return "probe-" + p
}

// pemProbe is other bytes for non-nil ones.
func pemProbe(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte("probe-"), b...)
}

// passwordOf is the password part of a redis URL, as written.
func passwordOf(url string) string {
	at := strings.LastIndex(url, "@")
	colon := strings.Index(url, "://")
	if at < 0 || colon < 0 || at < colon+3 {
		return ""
	}
	userinfo := url[colon+3 : at]
	if i := strings.Index(userinfo, ":"); i >= 0 {
		return userinfo[i+1:]
	}
	return ""
}
