package redisadmin

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/incusops/redis-sentinel-operator/internal/acl"
	"github.com/incusops/redis-sentinel-operator/internal/endpoint"
	"github.com/incusops/redis-sentinel-operator/internal/engine"
	"github.com/incusops/redis-sentinel-operator/internal/testenv"
	"github.com/incusops/redis-sentinel-operator/internal/testredis"
)

const adminPassword = "admin-test-password"

// redisEngine runs the tests of engine-independent client code.
var redisEngine = engine.MustOf(engine.Redis)

var adminCreds = Credentials{Username: acl.AdminUser, Password: adminPassword}

// startServer runs a server of engine e (or its sentinel) with the
// default user disabled, the operator's admin user and the extra config
// lines, until t ends.
func startServer(t *testing.T, e engine.Engine, sentinel bool, extra ...string) (*testredis.Proc, endpoint.Endpoint) {
	t.Helper()
	testredis.Need(t, e.Name)
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
		// No 5 s wait before a replica's full sync, as the operator renders it.
		conf += "save \"\"\nappendonly no\nrepl-diskless-sync-delay 0\n"
	}
	conf += strings.Join(extra, "\n") + "\n"
	dir := t.TempDir()
	conf += "dir " + dir + "\n"
	p, err := testredis.Start(dir, port, []byte(conf), testredis.Spec{Engine: e.Name, Sentinel: sentinel, Username: acl.AdminUser, Password: adminPassword})
	if err != nil {
		t.Fatal(err)
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
	_, server := startServer(t, redisEngine, false)
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
	_, server := startServer(t, redisEngine, false,
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

func TestSetUser(t *testing.T) { testredis.ForEach(t, testSetUser) }

func testSetUser(t *testing.T, e engine.Engine) {
	p, server := startServer(t, e, false)
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
	testredis.ForEach(t, testSentinelSetUserAndConfigSet)
}

func testSentinelSetUserAndConfigSet(t *testing.T, e engine.Engine) {
	masterPort, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	p, sentinel := startServer(t, e, true, fmt.Sprintf("sentinel monitor m 127.0.0.1 %d 1", masterPort))
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

// TestAdminOnRealServers: every Admin command against a real master, its
// replica and a sentinel (quorum 1) of each engine, answers read into the
// typed form: INFO replication and memory, CONFIG SET with CONFIG REWRITE,
// REPLICAOF, CLIENT PAUSE WRITE, and SENTINEL MASTER, REPLICAS, CKQUORUM,
// SET, FAILOVER and RESET.
func TestAdminOnRealServers(t *testing.T) { testredis.ForEach(t, testAdminOnRealServers) }

func testAdminOnRealServers(t *testing.T, e engine.Engine) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const name = "rsf-admin-test"
	auth := []string{"masteruser " + acl.AdminUser, "masterauth " + adminPassword}
	masterProc, master := startServer(t, e, false, append(auth, "maxmemory 64mb")...)
	replicaProc, replica := startServer(t, e, false, append(auth, fmt.Sprintf("replicaof 127.0.0.1 %d", master.Port))...)
	_, sentinel := startServer(t, e, true,
		fmt.Sprintf("sentinel monitor %s 127.0.0.1 %d 1", name, master.Port),
		fmt.Sprintf("sentinel auth-user %s %s", name, acl.AdminUser),
		fmt.Sprintf("sentinel auth-pass %s %s", name, adminPassword),
		fmt.Sprintf("sentinel down-after-milliseconds %s 5000", name),
		fmt.Sprintf("sentinel failover-timeout %s 3000", name))
	d := NewGoRedisDialer(2 * time.Second)
	defer d.Close()
	a := d.Admin("ns/f", adminCreds)
	poll := func(what string, f func() error) {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			err := f()
			if err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %v", what, err)
			}
		}
	}

	// INFO replication and memory, read on both sides of a link.
	poll("replica linked", func() error {
		r, err := a.Replication(ctx, replica)
		if err != nil || r.Role != "slave" || r.Master != master || !r.LinkUp || r.Offset <= 0 || r.Priority != 100 || r.IsMaster() {
			return fmt.Errorf("replica: %+v %v", r, err)
		}
		m, err := a.Replication(ctx, master)
		if err != nil || !m.IsMaster() || m.ConnectedReplicas != 1 || m.Offset <= 0 || m.Maxmemory != 64<<20 || m.UsedMemory <= 0 || !m.Master.IsZero() {
			return fmt.Errorf("master: %+v %v", m, err)
		}
		return nil
	})

	// CONFIG SET, persisted by CONFIG REWRITE; the replication login is set
	// under Redis's names, which Valkey writes back under its own.
	if err := a.ConfigSet(ctx, replica, map[string]string{"replica-priority": "0", "masteruser": acl.AdminUser, "masterauth": adminPassword}); err != nil {
		t.Fatal(err)
	}
	if r, err := a.Replication(ctx, replica); err != nil || r.Priority != 0 {
		t.Fatalf("after CONFIG SET replica-priority 0: %+v %v", r, err)
	}
	b, err := os.ReadFile(replicaProc.Conf)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{"replica-priority 0", e.RewrittenAs("masteruser") + " \"" + acl.AdminUser + "\""} {
		if !strings.Contains(string(b), line+"\n") {
			t.Errorf("the rewritten config lacks %q:\n%s", line, b)
		}
	}
	if err := a.ConfigSet(ctx, replica, map[string]string{"no-such-setting": "1"}); err == nil {
		t.Error("CONFIG SET of an unknown setting succeeded")
	}
	if err := a.ConfigSet(ctx, replica, map[string]string{"replica-priority": "100"}); err != nil {
		t.Fatal(err)
	}

	// CLIENT PAUSE WRITE holds a write until CLIENT UNPAUSE.
	if err := a.PauseWrites(ctx, master, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	writer := redis.NewClient(&redis.Options{Addr: master.String(), Username: acl.AdminUser, Password: adminPassword, DisableIdentity: true})
	defer writer.Close()
	written := make(chan error, 1)
	go func() { written <- writer.Set(ctx, "k", "v", 0).Err() }()
	select {
	case err := <-written:
		t.Fatalf("a write went through CLIENT PAUSE WRITE: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	if err := a.ResumeWrites(ctx, master); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-written:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the write still waits after CLIENT UNPAUSE")
	}

	// The sentinel's view, read into MasterState and ReplicaState.
	poll("sentinel sees the formation", func() error {
		m, err := a.SentinelMaster(ctx, sentinel, name)
		if err != nil || m.Address != master || !m.HasFlag("master") || m.FailoverInProgress() || m.Quorum != 1 ||
			m.DownAfterMs != 5000 || m.FailoverTimeoutMs != 3000 || m.ParallelSyncs != 1 || m.NumReplicas != 1 || m.NumOtherSentinels != 0 {
			return fmt.Errorf("%+v %v", m, err)
		}
		reps, err := a.SentinelReplicas(ctx, sentinel, name)
		if err != nil || len(reps) != 1 || reps[0].Address != replica || reps[0].Priority != 100 || !slices.Contains(reps[0].Flags, "slave") {
			return fmt.Errorf("replicas %+v %v", reps, err)
		}
		return nil
	})
	if err := a.SentinelCKQuorum(ctx, sentinel, name); err != nil {
		t.Fatal(err)
	}
	if _, err := a.SentinelMaster(ctx, sentinel, "no-such-name"); !errors.Is(err, ErrNoSuchMaster) {
		t.Fatalf("SENTINEL MASTER of an unknown name: %v, want ErrNoSuchMaster", err)
	}
	if err := a.SentinelSet(ctx, sentinel, name, map[string]string{"down-after-milliseconds": "4000"}); err != nil {
		t.Fatal(err)
	}
	if m, err := a.SentinelMaster(ctx, sentinel, name); err != nil || m.DownAfterMs != 4000 {
		t.Fatalf("after SENTINEL SET: %+v %v", m, err)
	}

	// SENTINEL FAILOVER promotes the replica; REPLICAOF links the old
	// master to it (before the sentinel would).
	if err := a.SentinelFailover(ctx, sentinel, name); err != nil {
		t.Fatal(err)
	}
	poll("failover", func() error {
		m, err := a.SentinelMaster(ctx, sentinel, name)
		if err != nil || m.Address != replica || m.ConfigEpoch < 1 {
			return fmt.Errorf("%+v %v", m, err)
		}
		r, err := a.Replication(ctx, replica)
		if err != nil || !r.IsMaster() {
			return fmt.Errorf("promoted: %+v %v", r, err)
		}
		return nil
	})
	if err := a.ReplicaOf(ctx, master, replica); err != nil {
		t.Fatal(err)
	}
	poll("old master linked to the new", func() error {
		r, err := a.Replication(ctx, master)
		if err != nil || r.Role != "slave" || r.Master != replica || !r.LinkUp {
			return fmt.Errorf("%+v %v", r, err)
		}
		return nil
	})
	if b, err := os.ReadFile(masterProc.Conf); err != nil || !strings.Contains(string(b), fmt.Sprintf("replicaof 127.0.0.1 %d\n", replica.Port)) {
		t.Errorf("REPLICAOF not persisted: %v\n%s", err, b)
	}
	if err := a.SentinelReset(ctx, sentinel, name); err != nil {
		t.Fatal(err)
	}
}
