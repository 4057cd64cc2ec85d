package redisclient

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/incusops/redis-sentinel-operator/internal/certs"
	"github.com/incusops/redis-sentinel-operator/internal/config"
	"github.com/incusops/redis-sentinel-operator/internal/engine"
	"github.com/incusops/redis-sentinel-operator/internal/testenv"
	"github.com/incusops/redis-sentinel-operator/internal/testredis"
)

// TestTLSFormation runs a TLS-only server and a TLS-only sentinel
// (tls-auth-clients yes, plaintext port 0) of each engine with one CA, and
// reaches the master through the sentinel with a client built from the
// environment a connection Secret gives a backend.
func TestTLSFormation(t *testing.T) { testredis.ForEach(t, testTLSFormation) }

func testTLSFormation(t *testing.T, e engine.Engine) {
	const (
		masterName       = "rsf-tls"
		sentinelPassword = "sentinel-Pa55"
	)
	dir := t.TempDir()
	loopback := []net.IP{net.IPv4(127, 0, 0, 1)}
	ca := testenv.IssueCert(t, "formation-ca", nil, true, nil, nil)
	member := testenv.IssueCert(t, "127.0.0.1", &ca, false, nil, loopback)
	client := testenv.IssueCert(t, "backend", &ca, false, nil, nil)
	otherCA := testenv.IssueCert(t, "other-ca", nil, true, nil, nil)

	files := map[string][]byte{"ca.crt": ca.CertPEM(), "member.crt": member.CertPEM(), "member.key": member.KeyPEM(t)}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tlsConf := fmt.Sprintf("tls-cert-file %s\ntls-key-file %s\ntls-ca-cert-file %s\ntls-auth-clients yes\n",
		filepath.Join(dir, "member.crt"), filepath.Join(dir, "member.key"), filepath.Join(dir, "ca.crt"))
	// Readiness PINGs present the member certificate (it has ClientAuth).
	ready, err := certs.ClientConfig(ca.CertPEM(), member.CertPEM(), member.KeyPEM(t))
	if err != nil {
		t.Fatal(err)
	}

	master, err := startOnFreePort(filepath.Join(dir, "master"), testredis.Spec{Engine: e.Name, Password: testPassword, TLS: ready}, func(port int) string {
		return fmt.Sprintf("port 0\ntls-port %d\nbind 127.0.0.1\nsave \"\"\nappendonly no\nrequirepass %s\ndir %s\ndaemonize no\n%s",
			port, testPassword, filepath.Join(dir, "master"), tlsConf)
	})
	if err != nil {
		t.Fatalf("%s with TLS: %v", e.Name, err)
	}
	master.StopAtCleanup(t)
	sentinel, err := startOnFreePort(filepath.Join(dir, "sentinel"), testredis.Spec{Engine: e.Name, Sentinel: true, Password: sentinelPassword, TLS: ready}, func(port int) string {
		return fmt.Sprintf("port 0\ntls-port %d\nbind 127.0.0.1\ndaemonize no\ndir %s\nlogfile \"\"\nrequirepass %s\n%stls-replication yes\nsentinel monitor %s 127.0.0.1 %d 1\nsentinel auth-pass %s %s\n",
			port, filepath.Join(dir, "sentinel"), sentinelPassword, tlsConf, masterName, master.Port, masterName, testPassword)
	})
	if err != nil {
		t.Fatalf("%s sentinel with TLS: %v", e.Name, err)
	}
	sentinel.StopAtCleanup(t)

	env := func(kv ...string) func(string) string {
		m := map[string]string{
			config.EnvURL:              "rediss://:" + testPassword + "@dummy:6379/0",
			config.EnvSentinelAddrs:    sentinel.Addr(),
			config.EnvMasterName:       masterName,
			config.EnvSentinelPassword: sentinelPassword,
			config.EnvTLSCACert:        string(ca.CertPEM()),
			config.EnvTLSClientCert:    string(client.CertPEM()),
			config.EnvTLSClientKey:     string(client.KeyPEM(t)),
		}
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == "" {
				delete(m, kv[i])
			} else {
				m[kv[i]] = kv[i+1]
			}
		}
		return func(k string) string { return m[k] }
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	failFast := Options{MaxRetries: -1, DialerRetries: 1, DialTimeout: time.Second}

	t.Run("sentinel mode", func(t *testing.T) {
		c, err := FromEnv(env(), Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Set(ctx, "tls-test:k", "v", time.Minute).Err(); err != nil {
			t.Fatalf("SET over TLS through the sentinel: %v", err)
		}
		if v, err := c.Get(ctx, "tls-test:k").Result(); err != nil || v != "v" {
			t.Fatalf("GET over TLS through the sentinel = %q, %v", v, err)
		}
	})

	t.Run("single mode", func(t *testing.T) {
		c, err := FromEnv(env(config.EnvSentinelAddrs, "", config.EnvURL, "rediss://:"+testPassword+"@"+master.Addr()+"/0"), Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if v, err := c.Get(ctx, "tls-test:k").Result(); err != nil || v != "v" {
			t.Fatalf("GET over TLS from the master = %q, %v", v, err)
		}
	})

	refused := map[string]func(string) string{
		// tls-auth-clients yes: no client certificate, no connection.
		"without the client certificate":             env(config.EnvTLSClientCert, "", config.EnvTLSClientKey, ""),
		"with another CA":                            env(config.EnvTLSCACert, string(otherCA.CertPEM())),
		"over plaintext":                             env(config.EnvURL, "redis://:"+testPassword+"@dummy:6379/0", config.EnvTLSCACert, "", config.EnvTLSClientCert, "", config.EnvTLSClientKey, ""),
		"over plaintext to the master":               env(config.EnvSentinelAddrs, "", config.EnvURL, "redis://:"+testPassword+"@"+master.Addr()+"/0", config.EnvTLSCACert, "", config.EnvTLSClientCert, "", config.EnvTLSClientKey, ""),
		"single mode without the client certificate": env(config.EnvSentinelAddrs, "", config.EnvURL, "rediss://:"+testPassword+"@"+master.Addr()+"/0", config.EnvTLSClientCert, "", config.EnvTLSClientKey, ""),
		// The member certificate names 127.0.0.1 only.
		"single mode by a name the certificate lacks": env(config.EnvSentinelAddrs, "", config.EnvURL, fmt.Sprintf("rediss://:%s@localhost:%d/0", testPassword, master.Port)),
	}
	for name, getenv := range refused {
		t.Run(name, func(t *testing.T) {
			c, err := FromEnv(getenv, failFast)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			err = c.Set(ctx, "tls-test:refused", "v", time.Minute).Err()
			if err == nil {
				t.Fatal("SET succeeded")
			}
			t.Logf("refused: %v", err)
		})
	}
}

// TestNewRejectsUnusableTLS: New returns certs.ClientConfig's error for a
// config that did not come from config.FromEnv.
func TestNewRejectsUnusableTLS(t *testing.T) {
	cfg := config.Redis{Network: "tcp", Addr: "127.0.0.1:1", TLS: true, TLSCACert: []byte("not PEM")}
	if _, err := New(cfg, Options{}); err == nil {
		t.Fatal("New accepted a CA without a certificate")
	}
	cfg.TLSCACert, cfg.TLSClientCert = nil, []byte("x")
	if _, err := New(cfg, Options{}); err == nil {
		t.Fatal("New accepted a client certificate without its key")
	}
}
