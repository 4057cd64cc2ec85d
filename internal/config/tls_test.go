package config

import (
	"net"
	"strings"
	"testing"

	"github.com/incusops/redis-sentinel-operator/internal/testenv"
)

// tlsPEMs is a CA, a client certificate it signed with its key, and the key
// of another certificate.
type tlsPEMs struct{ ca, cert, key, otherKey []byte }

func newTLSPEMs(t testing.TB) tlsPEMs {
	t.Helper()
	ca := testenv.IssueCert(t, "test-ca", nil, true, nil, nil)
	client := testenv.IssueCert(t, "backend", &ca, false, nil, []net.IP{net.IPv4(127, 0, 0, 1)})
	other := testenv.IssueCert(t, "other", &ca, false, nil, nil)
	return tlsPEMs{ca: ca.CertPEM(), cert: client.CertPEM(), key: client.KeyPEM(t), otherKey: other.KeyPEM(t)}
}

// keyTokens are the lines of the body of a PEM key that could only come
// from it: 16 or more base64 characters (no message text is such a run).
func keyTokens(key []byte) []string {
	var out []string
	for _, line := range strings.Split(string(key), "\n") {
		line = strings.TrimSpace(line)
		if len(line) >= 16 && strings.Trim(line, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=") == "" {
			out = append(out, line)
		}
	}
	return out
}

// assertNoKey fails when s holds a line of the body of a PEM key.
func assertNoKey(t testing.TB, what, s string, keys ...[]byte) {
	t.Helper()
	for _, k := range keys {
		for _, tok := range keyTokens(k) {
			if strings.Contains(s, tok) {
				t.Fatalf("%s quotes a PEM key: %s", what, s)
			}
		}
	}
}

func TestTLSFromMap(t *testing.T) {
	p := newTLSPEMs(t)
	const (
		rediss    = "rediss://:" + secret + "@dummy:6379/0"
		sentinels = "10.0.0.1:26379"
	)
	sentinel := func(kv ...string) map[string]string {
		m := map[string]string{EnvSentinelAddrs: sentinels, EnvMasterName: "m"}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	ca, cert, key := string(p.ca), string(p.cert), string(p.key)
	tests := []struct {
		name    string
		env     map[string]string
		want    Redis
		wantErr []string
	}{
		{
			name: "sentinel mode over TLS with a CA and a client certificate",
			env:  sentinel(EnvURL, rediss, EnvTLSCACert, ca, EnvTLSClientCert, cert, EnvTLSClientKey, key),
			want: Redis{
				URL: rediss, Network: "tcp", Addr: "dummy:6379", Password: secret, TLS: true,
				SentinelAddrs: []string{sentinels}, MasterName: "m",
				TLSCACert: p.ca, TLSClientCert: p.cert, TLSClientKey: p.key,
			},
		},
		{
			name: "sentinel mode without REDIS_URL: a TLS variable means TLS",
			env:  sentinel(EnvTLSCACert, ca),
			want: Redis{Network: "tcp", TLS: true, SentinelAddrs: []string{sentinels}, MasterName: "m", TLSCACert: p.ca},
		},
		{
			name: "single instance over TLS with a CA only",
			env:  map[string]string{EnvURL: "rediss://h:6380/1", EnvTLSCACert: ca},
			want: Redis{URL: "rediss://h:6380/1", Network: "tcp", Addr: "h:6380", DB: 1, TLS: true, TLSCACert: p.ca},
		},
		{
			name: "rediss:// without TLS variables trusts the system roots",
			env:  sentinel(EnvURL, "rediss://dummy:6379/0"),
			want: Redis{URL: "rediss://dummy:6379/0", Network: "tcp", Addr: "dummy:6379", TLS: true, SentinelAddrs: []string{sentinels}, MasterName: "m"},
		},
		{
			name: "whitespace-only TLS variables are unset",
			env:  map[string]string{EnvURL: "redis://h:1/0", EnvTLSCACert: " \n", EnvTLSClientCert: "\t", EnvTLSClientKey: " "},
			want: Redis{URL: "redis://h:1/0", Network: "tcp", Addr: "h:1"},
		},
		{
			name:    "a CA with a redis:// URL",
			env:     sentinel(EnvURL, "redis://:"+secret+"@dummy:6379/0", EnvTLSCACert, ca),
			wantErr: []string{EnvTLSCACert + " set", EnvURL, "rediss://"},
		},
		{
			name:    "a client certificate with a unix:// URL",
			env:     map[string]string{EnvURL: "unix:///run/redis.sock", EnvTLSClientCert: cert, EnvTLSClientKey: key},
			wantErr: []string{EnvTLSClientCert + ", " + EnvTLSClientKey + " set", "rediss://"},
		},
		{
			name:    "certificate without key",
			env:     sentinel(EnvURL, rediss, EnvTLSClientCert, cert),
			wantErr: []string{EnvTLSClientCert + " is set but " + EnvTLSClientKey + " is empty"},
		},
		{
			name:    "key without certificate",
			env:     sentinel(EnvURL, rediss, EnvTLSClientKey, key),
			wantErr: []string{EnvTLSClientKey + " is set but " + EnvTLSClientCert + " is empty"},
		},
		{
			name:    "a CA that is no PEM",
			env:     sentinel(EnvURL, rediss, EnvTLSCACert, secret),
			wantErr: []string{EnvTLSCACert, "no PEM certificate"},
		},
		{
			name:    "a key given as the CA",
			env:     sentinel(EnvURL, rediss, EnvTLSCACert, key),
			wantErr: []string{EnvTLSCACert, "no PEM certificate"},
		},
		{
			name:    "certificate and key switched",
			env:     sentinel(EnvURL, rediss, EnvTLSClientCert, key, EnvTLSClientKey, cert),
			wantErr: []string{EnvTLSClientCert, "switched"},
		},
		{
			name:    "the key of another certificate",
			env:     sentinel(EnvURL, rediss, EnvTLSClientCert, cert, EnvTLSClientKey, string(p.otherKey)),
			wantErr: []string{EnvTLSClientKey, "does not match"},
		},
		{
			name:    "a key that is no PEM",
			env:     sentinel(EnvURL, rediss, EnvTLSClientCert, cert, EnvTLSClientKey, secret),
			wantErr: []string{EnvTLSClientKey, "no PEM private key"},
		},
		{
			name:    "a PEM key whose body does not parse",
			env:     sentinel(EnvURL, rediss, EnvTLSClientCert, cert, EnvTLSClientKey, "-----BEGIN EC PRIVATE KEY-----\nczNjcjN0LVBhNTV3MHJk\n-----END EC PRIVATE KEY-----\n"),
			wantErr: []string{EnvTLSClientKey, "does not parse"},
		},
		{
			name:    "a certificate that is no PEM",
			env:     sentinel(EnvURL, rediss, EnvTLSClientCert, "not a certificate", EnvTLSClientKey, key),
			wantErr: []string{EnvTLSClientCert, "no PEM certificate"},
		},
		{
			name:    "every TLS problem at once",
			env:     sentinel(EnvURL, "redis://dummy:6379/0", EnvTLSCACert, "x", EnvTLSClientKey, key),
			wantErr: []string{EnvTLSCACert + " is invalid", EnvTLSClientKey + " is set but", "rediss://"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { checkFromMap(t, tc.env, tc.want, tc.wantErr, p.key, p.otherKey) })
	}
}

func TestTLSLoggingRedactsTheKey(t *testing.T) {
	p := newTLSPEMs(t)
	r, err := FromMap(map[string]string{
		EnvURL:           "rediss://:" + secret + "@dummy:6379/0",
		EnvSentinelAddrs: "127.0.0.1:26379",
		EnvMasterName:    "mymaster",
		EnvTLSCACert:     string(p.ca),
		EnvTLSClientCert: string(p.cert),
		EnvTLSClientKey:  string(p.key),
	})
	if err != nil {
		t.Fatal(err)
	}
	for name, out := range logOutputs(t, r) {
		assertNoSecret(t, name, out)
		// Neither the key nor any PEM at all.
		assertNoKey(t, name, out, p.key, p.cert, p.ca)
		if strings.Contains(out, "BEGIN") {
			t.Errorf("%s output shows PEM: %s", name, out)
		}
		if !strings.Contains(out, redacted) {
			t.Errorf("%s output %q lacks %q", name, out, redacted)
		}
	}
	if got := r.String(); got != "redis{mode=sentinel master=mymaster sentinels=[127.0.0.1:26379] db=0 password=<redacted> tls=true tls_ca=true tls_client_cert=true tls_client_key=<redacted>}" {
		t.Errorf("String() = %s", got)
	}
}
