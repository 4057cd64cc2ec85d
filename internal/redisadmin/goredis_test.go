package redisadmin

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/incusops/redis-sentinel-operator/internal/acl"
	"github.com/incusops/redis-sentinel-operator/internal/endpoint"
	"github.com/incusops/redis-sentinel-operator/internal/testenv"
	"github.com/incusops/redis-sentinel-operator/internal/testredis"
)

const adminPassword = "admin-test-password"

var adminCreds = Credentials{Username: acl.AdminUser, Password: adminPassword}

// startServer runs a redis-server (or a sentinel) with the default user
// disabled, the operator's admin user and the extra config lines, until t
// ends.
func startServer(t *testing.T, sentinel bool, extra ...string) (*testredis.Proc, endpoint.Endpoint) {
	t.Helper()
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	keys := "~* &*"
	if sentinel {
		keys = "&*" // a sentinel has no keys
	}
	conf := fmt.Sprintf("bind 127.0.0.1\nport %d\nuser default off resetpass\nuser %s on >%s %s +@all\n", port, acl.AdminUser, adminPassword, keys)
	if !sentinel {
		conf += "save \"\"\nappendonly no\n"
	}
	conf += strings.Join(extra, "\n") + "\n"
	p, err := testredis.Start(t.TempDir(), port, []byte(conf), testredis.Spec{Sentinel: sentinel, Username: acl.AdminUser, Password: adminPassword})
	if err != nil {
		testenv.Check(t, "redis-server", &testenv.UnavailableError{Err: err})
	}
	p.StopAtCleanup(t)
	return p, endpoint.Endpoint{Host: "127.0.0.1", Port: port}
}

func hashOf(pw string) string {
	sum := sha256.Sum256([]byte(pw))
	return hex.EncodeToString(sum[:])
}

// logsIn reports whether user can PING at e with password.
func logsIn(t *testing.T, e endpoint.Endpoint, user, password string) bool {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: e.String(), Username: user, Password: password, MaxRetries: -1, DisableIdentity: true})
	defer c.Close()
	return c.Ping(context.Background()).Err() == nil
}

// A deleted formation's clients are closed, and only its own.
func TestForgetClosesOnlyThatFormationsClients(t *testing.T) {
	_, server := startServer(t, false)
	d := NewGoRedisDialer(time.Second)
	defer d.Close()
	ctx := context.Background()
	a, b := d.Admin("ns/a", adminCreds), d.Admin("ns/b", adminCreds)
	for _, admin := range []Admin{a, b} {
		if _, err := admin.Replication(ctx, server); err != nil {
			t.Fatal(err)
		}
	}
	kept := d.owners["ns/b"].servers[server.String()].client

	d.Forget("ns/a")
	if _, ok := d.owners["ns/a"]; ok {
		t.Fatal("ns/a's clients are still cached after Forget")
	}
	if err := kept.Ping(ctx).Err(); err != nil {
		t.Fatalf("ns/b's client was closed with ns/a's: %v", err)
	}
	// An Admin used after Forget dials anew rather than using a closed client.
	if _, err := a.Replication(ctx, server); err != nil {
		t.Fatalf("ns/a after Forget: %v", err)
	}
	d.Forget("ns/b")
	if err := kept.Ping(ctx).Err(); err == nil {
		t.Fatal("ns/b's client still answers after Forget")
	}
}

// The cached client is replaced when the user changes, not only the
// password: two users with the same password are two identities.
func TestCachedClientFollowsTheUser(t *testing.T) {
	const same = "same-password"
	_, server := startServer(t, false,
		"user admin2 on >"+same+" ~* &* +@all",
		"user pinger on >"+same+" -@all +ping")
	d := NewGoRedisDialer(time.Second)
	defer d.Close()
	ctx := context.Background()
	tests := []struct {
		user    string
		wantErr string
	}{
		{"admin2", ""},
		{"pinger", "NOPERM"},
		{"admin2", ""},
		{"nobody", "WRONGPASS"},
	}
	for i, tt := range tests {
		_, err := d.Admin("ns/f", Credentials{Username: tt.user, Password: same}).Replication(ctx, server)
		if (tt.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("%d: INFO as %s: %v, want %q", i, tt.user, err, tt.wantErr)
		}
	}
	if n := len(d.owners["ns/f"].servers); n != 1 {
		t.Errorf("%d cached clients for one address, want 1 (replaced, not added)", n)
	}
}

// noSecret fails if err's text holds any of secrets.
func noSecret(t *testing.T, err error, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if err != nil && strings.Contains(err.Error(), s) {
			t.Errorf("error %q contains a password", err)
		}
	}
}

func TestSetUser(t *testing.T) {
	p, server := startServer(t, false)
	a := NewGoRedisDialer(2*time.Second).Admin("ns/f", adminCreds)
	ctx := context.Background()
	rules := acl.DefaultBackendRules
	tests := []struct {
		name string
		user acl.User
		// wantErr: "" for success, else a substring of the error.
		wantErr string
		// accepted and refused are logins checked afterwards.
		accepted, refused []string
	}{
		{"a new user with two passwords", acl.User{Name: "backend", Passwords: []string{"pw-1", "pw-2"}, Rules: rules}, "",
			[]string{"pw-1", "pw-2"}, []string{"pw-3"}},
		{"the old password dropped", acl.User{Name: "backend", Passwords: []string{"pw-2"}, Rules: rules}, "",
			[]string{"pw-2"}, []string{"pw-1"}},
		{"a refused rule is reported and the user kept as it was", acl.User{Name: "backend", Passwords: []string{"pw-3"}, Rules: []string{"+@all", "+nosuchcommand"}},
			"'+nosuchcommand': Unknown command", []string{"pw-2"}, []string{"pw-3"}},
		{"a refused rule that quotes the password is withheld", acl.User{Name: "backend", Passwords: []string{"zz-secret-zz"}, Rules: []string{"+zz-secret-zz"}},
			"ERR (the server's message is withheld", []string{"pw-2"}, []string{"zz-secret-zz"}},
		{"a user without passwords is disabled", acl.User{Name: "backend", Rules: rules}, "",
			nil, []string{"pw-2", ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := a.SetUser(ctx, server, tt.user)
			if (tt.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("SetUser: %v, want %q", err, tt.wantErr)
			}
			noSecret(t, err, tt.user.Passwords...)
			for _, pw := range tt.accepted {
				if !logsIn(t, server, "backend", pw) {
					t.Errorf("backend cannot log in with %q", pw)
				}
			}
			for _, pw := range tt.refused {
				if logsIn(t, server, "backend", pw) {
					t.Errorf("backend logs in with %q", pw)
				}
			}
			if err != nil {
				return
			}
			// CONFIG REWRITE persisted it, as hashes.
			b, err := os.ReadFile(p.Conf)
			if err != nil {
				t.Fatal(err)
			}
			for _, pw := range tt.user.Passwords {
				if !strings.Contains(string(b), "#"+hashOf(pw)) || strings.Contains(string(b), pw) {
					t.Errorf("redis.conf after SetUser lacks the hash of %q or holds it in clear text:\n%s", pw, b)
				}
			}
		})
	}
}

func TestSentinelSetUserAndConfigSet(t *testing.T) {
	masterPort, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	p, sentinel := startServer(t, true, fmt.Sprintf("sentinel monitor m 127.0.0.1 %d 1", masterPort))
	a := NewGoRedisDialer(2*time.Second).Admin("ns/f", adminCreds)
	ctx := context.Background()
	file := func() string {
		b, err := os.ReadFile(p.Conf)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if _, err := a.SentinelMaster(ctx, sentinel, "m"); err != nil {
		t.Fatalf("SENTINEL MASTER as %s: %v", acl.AdminUser, err)
	}
	if err := a.SentinelMonitor(ctx, sentinel, "other", endpoint.Endpoint{Host: "127.0.0.1", Port: masterPort + 1}, 2); err != nil {
		t.Fatal(err)
	}
	masters, err := a.SentinelMasters(ctx, sentinel)
	if err != nil {
		t.Fatalf("SENTINEL MASTERS: %v", err)
	}
	if got := masters["m"]; len(masters) != 2 || got.Address.Port != masterPort || got.Quorum != 1 || masters["other"].Quorum != 2 {
		t.Fatalf("SENTINEL MASTERS read as %+v", masters)
	}
	if err := a.SentinelRemove(ctx, sentinel, "other"); err != nil {
		t.Fatal(err)
	}

	backend := acl.User{Name: "backend", Passwords: []string{"b-1", "b-2"}, Rules: acl.DiscoveryRules}
	if err := a.SentinelSetUser(ctx, sentinel, backend); err != nil {
		t.Fatal(err)
	}
	for _, pw := range backend.Passwords {
		if !strings.Contains(file(), "#"+hashOf(pw)) || strings.Contains(file(), pw) {
			t.Errorf("sentinel.conf after SentinelSetUser lacks the hash of %q or holds it in clear text:\n%s", pw, file())
		}
		sc := redis.NewSentinelClient(&redis.Options{Addr: sentinel.String(), Username: "backend", Password: pw, MaxRetries: -1, DisableIdentity: true})
		if _, err := sc.GetMasterAddrByName(ctx, "m").Result(); err != nil {
			t.Errorf("backend discovery with %q: %v", pw, err)
		}
		sc.Close()
	}
	refused := acl.User{Name: "backend", Passwords: []string{"b-3"}, Rules: []string{"+nosuchcommand"}}
	err = a.SentinelSetUser(ctx, sentinel, refused)
	if err == nil || !strings.Contains(err.Error(), "+nosuchcommand") {
		t.Errorf("a refused rule: %v", err)
	}
	noSecret(t, err, "b-3")

	tests := []struct {
		name     string
		settings map[string]string
		wantErr  bool
		inFile   []string
	}{
		{"peer credentials", map[string]string{"sentinel-user": acl.PeerUser, "sentinel-pass": "peer-secret-1"}, false,
			[]string{"sentinel sentinel-user " + acl.PeerUser, "sentinel sentinel-pass peer-secret-1"}},
		{"peer password rotated", map[string]string{"sentinel-pass": "peer-secret-2"}, false,
			[]string{"sentinel sentinel-pass peer-secret-2"}},
		{"a refused value is never quoted", map[string]string{"announce-port": "zz-secret-zz"}, true, nil},
		{"an unknown setting", map[string]string{"no-such-setting": "zz-secret-zz"}, true, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := a.SentinelConfigSet(ctx, sentinel, tt.settings)
			if (err != nil) != tt.wantErr {
				t.Fatalf("SentinelConfigSet: %v, want error %v", err, tt.wantErr)
			}
			t.Logf("error: %v", err)
			for _, v := range tt.settings {
				noSecret(t, err, v)
			}
			for _, line := range tt.inFile {
				if !strings.Contains(file(), line+"\n") {
					t.Errorf("sentinel.conf lacks %q (Sentinel persists SENTINEL CONFIG SET itself):\n%s", line, file())
				}
			}
		})
	}
}

func TestWithholdSecrets(t *testing.T) {
	tests := []struct {
		err     error
		secrets []string
		want    string
	}{
		{nil, []string{"pw"}, ""},
		{errors.New("ERR Error in ACL SETUSER modifier '+x': Unknown command"), []string{"pw", ""}, "ERR Error in ACL SETUSER modifier '+x': Unknown command"},
		{errors.New("ERR Error in ACL SETUSER modifier '+pw': Unknown command"), []string{"other", "pw"}, "ERR (the server's message is withheld: it quoted a password)"},
		{errors.New("NOPERM this user has no permissions: pw"), []string{"pw"}, "NOPERM (the server's message is withheld: it quoted a password)"},
		{errors.New("pw is not a code"), []string{"pw"}, "ERR (the server's message is withheld: it quoted a password)"},
		{errors.New("WEIRD pw"), []string{"pw"}, "ERR (the server's message is withheld: it quoted a password)"},
	}
	for _, tt := range tests {
		got := withholdSecrets(tt.err, tt.secrets...)
		if (got == nil) != (tt.want == "") || (got != nil && got.Error() != tt.want) {
			t.Errorf("withholdSecrets(%v, %q) = %v, want %q", tt.err, tt.secrets, got, tt.want)
		}
	}
}
