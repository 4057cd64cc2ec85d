package redisfake_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/incusops/redis-sentinel-operator/internal/acl"
	"github.com/incusops/redis-sentinel-operator/internal/endpoint"
	"github.com/incusops/redis-sentinel-operator/internal/engine"
	"github.com/incusops/redis-sentinel-operator/internal/incus"
	"github.com/incusops/redis-sentinel-operator/internal/incus/incusfake"
	"github.com/incusops/redis-sentinel-operator/internal/redisadmin"
	"github.com/incusops/redis-sentinel-operator/internal/redisadmin/redisfake"
	"github.com/incusops/redis-sentinel-operator/internal/render"
)

// redisEngine is the engine of instances built without user.rsf.engine.
var redisEngine = engine.MustOf(engine.Redis)

const masterName = "mymaster"

// creds are the formation's credentials; the sentinel.conf the formation
// is configured with carries a wrong auth-pass (wrongAuthPass).
var creds = acl.Set{
	acl.Admin:                   {Current: "admin-pw-\"quoted\""},
	acl.Replication:             {Current: "replication-pw"},
	acl.Monitoring:              {Current: "monitoring-pw"},
	acl.Peer:                    {Current: "peer-pw"},
	acl.BackendPassword:         {Current: "backend-pw"},
	acl.BackendSentinelPassword: {Current: "backend-sentinel-pw"},
}

const wrongAuthPass = "wrong-monitoring-pw"

var (
	backend = acl.Backend{Name: acl.DefaultBackendUser, Rules: acl.DefaultBackendRules}
	// adminCreds is the operator's admin user.
	adminCreds = redisadmin.Credentials{Username: acl.AdminUser, Password: creds[acl.Admin].Current}
)

// fixAuthPass gives every sentinel the right auth-pass.
func fixAuthPass(t *testing.T, a redisadmin.Admin, redises []endpoint.Endpoint) {
	t.Helper()
	for _, e := range redises {
		if err := a.SentinelSet(context.Background(), sentinelOf(e), masterName, map[string]string{"auth-pass": creds[acl.Monitoring].Current}); err != nil {
			t.Fatal(err)
		}
	}
}

// configureScript is the operator's configure step (controllers/heal.go).
const configureScript = "set -e; chown redis:redis /etc/redis/redis.conf /etc/redis/sentinel.conf" +
	" && systemctl enable --now redis-sentinel && systemctl start --no-block redis-server && touch /etc/redis/rsf-configured"

var probe = []string{"sh", "-c", `printf '%s %s %s\n' "$(test -f /etc/redis/rsf-configured && echo yes || echo no)" ` +
	`"$(systemctl is-active redis-server)" "$(systemctl is-active redis-sentinel)"`}

// formation creates three running instances and configures them the way
// the operator does: member 1 master, 2 and 3 its replicas, every sentinel
// monitoring member 1.
func formation(t *testing.T) (*incusfake.Fake, *redisfake.World, []endpoint.Endpoint) {
	t.Helper()
	ctx := context.Background()
	f := incusfake.New()
	w := redisfake.New()
	w.Attach(f)
	var hosts []string
	for i := 1; i <= 3; i++ {
		name := fmt.Sprintf("f-%d", i)
		if err := f.CreateInstance(ctx, incus.InstanceSpec{Name: name, Image: "rsf-redis7-bookworm-v1", Profiles: []string{"rsf-redis"}}); err != nil {
			t.Fatal(err)
		}
		inst, err := f.GetInstance(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		hosts = append(hosts, inst.IPv4)
	}
	master := endpoint.Endpoint{Host: hosts[0], Port: 6379}
	var redises []endpoint.Endpoint
	for i, host := range hosts {
		name := fmt.Sprintf("f-%d", i+1)
		if res, _ := f.Exec(ctx, name, probe); res.Stdout != "no inactive inactive\n" {
			t.Fatalf("probe of a new member: %q", res.Stdout)
		}
		r := render.Redis{Address: host, Port: 6379, Users: acl.ServerUsers(creds, backend), MasterUser: acl.ReplicationUser,
			MasterAuth: creds[acl.Replication].Current, Maxmemory: "1gb", MaxmemoryPolicy: "allkeys-lru", AppendFsync: "everysec"}
		if i > 0 {
			r.ReplicaOf = &master
		}
		conf, err := render.RedisConf(r)
		if err != nil {
			t.Fatal(err)
		}
		sconf, err := render.SentinelConf(render.Sentinel{Address: host, Port: 26379, Users: acl.SentinelUsers(creds, backend, redisEngine),
			PeerUser: acl.PeerUser, PeerPassword: creds[acl.Peer].Current, MasterName: masterName,
			Master: master, Quorum: 2, DownAfterMs: 5000, FailoverTimeoutMs: 30000, ParallelSyncs: 1,
			AuthUser: acl.MonitoringUser, AuthPass: wrongAuthPass})
		if err != nil {
			t.Fatal(err)
		}
		// Before the files exist, chown fails like in the container.
		if res, _ := f.Exec(ctx, name, []string{"sh", "-c", configureScript}); res.ExitCode == 0 {
			t.Fatal("configure without files succeeded")
		}
		_ = f.WriteFile(ctx, name, "/etc/redis/redis.conf", conf, 0o640, 0, 0)
		_ = f.WriteFile(ctx, name, "/etc/redis/sentinel.conf", sconf, 0o640, 0, 0)
		if res, err := f.Exec(ctx, name, []string{"sh", "-c", configureScript}); err != nil || res.ExitCode != 0 {
			t.Fatalf("configure %s: %+v %v", name, res, err)
		}
		if res, _ := f.Exec(ctx, name, probe); res.Stdout != "yes active active\n" {
			t.Fatalf("probe of a configured member: %q", res.Stdout)
		}
		redises = append(redises, endpoint.Endpoint{Host: host, Port: 6379})
	}
	if p := w.Problems(); len(p) > 0 {
		t.Fatalf("problems: %v", p)
	}
	return f, w, redises
}

func sentinelOf(e endpoint.Endpoint) endpoint.Endpoint {
	return endpoint.Endpoint{Host: e.Host, Port: 26379}
}

func TestFormationComesUp(t *testing.T) {
	ctx := context.Background()
	_, w, redises := formation(t)
	a := w.Admin("test", adminCreds)

	m, err := a.Replication(ctx, redises[0])
	if err != nil || !m.IsMaster() || m.ConnectedReplicas != 2 || m.Offset == 0 || m.Maxmemory != 1<<30 {
		t.Fatalf("master INFO: %+v %v", m, err)
	}
	for _, e := range redises[1:] {
		r, err := a.Replication(ctx, e)
		if err != nil || r.IsMaster() || r.Master != redises[0] || !r.LinkUp || r.Offset != m.Offset {
			t.Fatalf("replica %s INFO: %+v %v", e, r, err)
		}
	}
	// The password the sentinel.conf carried is wrong: the sentinels see
	// the master down until auth-pass is fixed.
	st, err := a.SentinelMaster(ctx, sentinelOf(redises[0]), masterName)
	if err != nil || !st.HasFlag("s_down") || st.NumReplicas != 0 {
		t.Fatalf("SENTINEL MASTER with a wrong auth-pass: %+v %v", st, err)
	}
	fixAuthPass(t, a, redises)
	for _, e := range redises {
		st, err := a.SentinelMaster(ctx, sentinelOf(e), masterName)
		if err != nil || st.Address != redises[0] || st.HasFlag("s_down") || st.NumReplicas != 2 || st.NumOtherSentinels != 2 ||
			st.Quorum != 2 || st.DownAfterMs != 5000 || st.FailoverTimeoutMs != 30000 || st.ParallelSyncs != 1 {
			t.Fatalf("SENTINEL MASTER on %s: %+v %v", e, st, err)
		}
		if err := a.SentinelCKQuorum(ctx, sentinelOf(e), masterName); err != nil {
			t.Fatalf("CKQUORUM: %v", err)
		}
	}
	if _, err := a.SentinelMaster(ctx, sentinelOf(redises[0]), "other"); !errors.Is(err, redisadmin.ErrNoSuchMaster) {
		t.Fatalf("unknown master name: %v", err)
	}
	for _, bad := range []redisadmin.Credentials{
		{Username: acl.AdminUser, Password: "nope"},
		{Username: acl.AdminUser, Password: creds[acl.Replication].Current}, // another user's password
		{Username: "nobody", Password: creds[acl.Admin].Current},
		{Password: creds[acl.Admin].Current}, // the default user: disabled
		{},
	} {
		a := w.Admin("test", bad)
		if _, err := a.Replication(ctx, redises[0]); err == nil || !strings.Contains(err.Error(), "WRONGPASS") {
			t.Errorf("%q: INFO: %v", bad.Username, err)
		}
		if _, err := a.SentinelMaster(ctx, sentinelOf(redises[0]), masterName); err == nil || !strings.Contains(err.Error(), "WRONGPASS") {
			t.Errorf("%q: SENTINEL MASTER: %v", bad.Username, err)
		}
	}
}

func TestCrashFailoverAndReset(t *testing.T) {
	ctx := context.Background()
	f, w, redises := formation(t)
	a := w.Admin("test", adminCreds)
	fixAuthPass(t, a, redises)
	for _, e := range redises {
		_, _ = a.SentinelMaster(ctx, sentinelOf(e), masterName)
	}

	// A replica's processes die: it stays counted, quorum holds (2 of 3).
	w.Crash("f-3")
	if _, err := a.Replication(ctx, redises[2]); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("crashed redis answers: %v", err)
	}
	if res, _ := f.Exec(ctx, "f-3", probe); res.Stdout != "yes inactive inactive\n" {
		t.Fatalf("probe of a crashed member: %q", res.Stdout)
	}
	st, _ := a.SentinelMaster(ctx, sentinelOf(redises[0]), masterName)
	if st.NumReplicas != 2 || st.NumOtherSentinels != 2 {
		t.Fatalf("departed peers forgotten without RESET: %+v", st)
	}
	if err := a.SentinelCKQuorum(ctx, sentinelOf(redises[0]), masterName); err != nil {
		t.Fatalf("CKQUORUM with 2 of 3: %v", err)
	}
	w.Crash("f-2")
	if err := a.SentinelCKQuorum(ctx, sentinelOf(redises[0]), masterName); err == nil {
		t.Fatal("CKQUORUM OK with 1 of 3 sentinels")
	}
	// Restarted: the sentinel comes back with its state.
	for _, name := range []string{"f-2", "f-3"} {
		if res, _ := f.Exec(ctx, name, []string{"sh", "-c", "set -e; systemctl start --no-block redis-sentinel"}); res.ExitCode != 0 {
			t.Fatal(res.Stderr)
		}
		if res, _ := f.Exec(ctx, name, []string{"sh", "-c", "set -e; chown redis:redis /etc/redis/redis.conf && systemctl start --no-block redis-server"}); res.ExitCode != 0 {
			t.Fatal(res.Stderr)
		}
	}
	if err := a.SentinelCKQuorum(ctx, sentinelOf(redises[1]), masterName); err != nil {
		t.Fatalf("CKQUORUM after restart: %v", err)
	}

	// Failover: member 2 promoted, 1 and 3 follow it, sentinels move.
	if err := a.SentinelFailover(ctx, sentinelOf(redises[0]), masterName); err != nil {
		t.Fatal(err)
	}
	if r, _ := a.Replication(ctx, redises[1]); !r.IsMaster() {
		t.Fatalf("promoted: %+v", r)
	}
	for _, e := range []endpoint.Endpoint{redises[0], redises[2]} {
		if r, _ := a.Replication(ctx, e); r.IsMaster() || r.Master != redises[1] || !r.LinkUp {
			t.Fatalf("%s after failover: %+v", e, r)
		}
	}
	for _, e := range redises {
		st, err := a.SentinelMaster(ctx, sentinelOf(e), masterName)
		if err != nil || st.Address != redises[1] || st.ConfigEpoch != 1 || st.NumReplicas != 2 || st.NumOtherSentinels != 2 {
			t.Fatalf("sentinel %s after failover: %+v %v", e, st, err)
		}
	}

	// REMOVE + MONITOR, RESET.
	s := sentinelOf(redises[2])
	if err := a.SentinelMonitor(ctx, s, masterName, redises[1], 2); err == nil {
		t.Fatal("duplicate MONITOR accepted")
	}
	if err := a.SentinelRemove(ctx, s, masterName); err != nil {
		t.Fatal(err)
	}
	if _, err := a.SentinelMaster(ctx, s, masterName); !errors.Is(err, redisadmin.ErrNoSuchMaster) {
		t.Fatalf("after REMOVE: %v", err)
	}
	if err := a.SentinelMonitor(ctx, s, masterName, redises[1], 2); err != nil {
		t.Fatal(err)
	}
	if st, _ := a.SentinelMaster(ctx, s, masterName); st.DownAfterMs != 30000 || !st.HasFlag("s_down") {
		t.Fatalf("a fresh MONITOR has Sentinel's defaults and no auth-pass: %+v", st)
	}
	if err := a.SentinelReset(ctx, sentinelOf(redises[0]), masterName); err != nil {
		t.Fatal(err)
	}
	if err := a.ReplicaOf(ctx, redises[0], redises[0]); err == nil {
		t.Fatal("REPLICAOF itself accepted")
	}
}

// A rotation as the operator does it: every user accepts the old and the
// new password, the places that send one switch to the new one, the old
// one is dropped. Nobody is locked out at any step.
func TestRotation(t *testing.T) {
	ctx := context.Background()
	_, w, redises := formation(t)
	a := w.Admin("test", adminCreds)
	fixAuthPass(t, a, redises)
	users := func(c acl.Credential, pw acl.Passwords) (server, sentinel []acl.User) {
		next := maps.Clone(creds)
		next[c] = pw
		return acl.ServerUsers(next, backend), acl.SentinelUsers(next, backend, redisEngine)
	}
	// linked: the replicas replicate, the sentinels reach the master and
	// their peers.
	linked := func(step string) {
		t.Helper()
		for _, e := range redises[1:] {
			if r, err := a.Replication(ctx, e); err != nil || !r.LinkUp {
				t.Fatalf("%s: replica %s: %+v %v", step, e, r, err)
			}
		}
		for _, e := range redises {
			if st, err := a.SentinelMaster(ctx, sentinelOf(e), masterName); err != nil || st.HasFlag("s_down") {
				t.Fatalf("%s: sentinel %s: %+v %v", step, e, st, err)
			}
			if err := a.SentinelCKQuorum(ctx, sentinelOf(e), masterName); err != nil {
				t.Fatalf("%s: %v", step, err)
			}
		}
	}
	setAll := func(server, sentinel []acl.User) {
		t.Helper()
		for _, e := range redises {
			for _, u := range server {
				if err := a.SetUser(ctx, e, u); err != nil {
					t.Fatal(err)
				}
			}
			for _, u := range sentinel {
				if err := a.SentinelSetUser(ctx, sentinelOf(e), u); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	linked("before")

	tests := []struct {
		cred acl.Credential
		// switchTo makes the senders of the credential use pw.
		switchTo func(e endpoint.Endpoint, pw string) error
		// user and at are where the credential is checked.
		user string
		at   func(endpoint.Endpoint) endpoint.Endpoint
	}{
		{acl.Replication, func(e endpoint.Endpoint, pw string) error {
			return a.ConfigSet(ctx, e, map[string]string{"masterauth": pw})
		}, acl.ReplicationUser, func(e endpoint.Endpoint) endpoint.Endpoint { return e }},
		{acl.Monitoring, func(e endpoint.Endpoint, pw string) error {
			return a.SentinelSet(ctx, sentinelOf(e), masterName, map[string]string{"auth-pass": pw})
		}, acl.MonitoringUser, func(e endpoint.Endpoint) endpoint.Endpoint { return e }},
		{acl.Peer, func(e endpoint.Endpoint, pw string) error {
			return a.SentinelConfigSet(ctx, sentinelOf(e), map[string]string{"sentinel-pass": pw})
		}, acl.PeerUser, sentinelOf},
		{acl.BackendPassword, nil, backend.Name, func(e endpoint.Endpoint) endpoint.Endpoint { return e }},
		{acl.BackendSentinelPassword, nil, backend.Name, sentinelOf},
	}
	for _, tt := range tests {
		t.Run(string(tt.cred), func(t *testing.T) {
			old, next := creds[tt.cred].Current, "next-"+string(tt.cred)
			setAll(users(tt.cred, acl.Passwords{Current: next, Previous: old}))
			for _, e := range redises {
				if got := w.UserPasswords(tt.at(e), tt.user, old, next, "other"); !slices.Equal(got, []string{old, next}) {
					t.Fatalf("%s on %s accepts %q during the grace period", tt.user, tt.at(e), got)
				}
			}
			linked("both accepted")
			if tt.switchTo != nil {
				for _, e := range redises {
					if err := tt.switchTo(e, next); err != nil {
						t.Fatal(err)
					}
				}
			}
			linked("switched")
			setAll(users(tt.cred, acl.Passwords{Current: next}))
			linked("old dropped")
			for _, e := range redises {
				if got := w.UserPasswords(tt.at(e), tt.user, old, next); !slices.Equal(got, []string{next}) {
					t.Fatalf("%s on %s accepts %q after the rotation", tt.user, tt.at(e), got)
				}
			}
			// Put the credential back for the next row.
			setAll(users(tt.cred, acl.Passwords{Current: old, Previous: next}))
			if tt.switchTo != nil {
				for _, e := range redises {
					_ = tt.switchTo(e, old)
				}
			}
			setAll(users(tt.cred, acl.Passwords{Current: old}))
			linked("restored")
		})
	}

	// The admin user's own password: the old Admin is locked out once it
	// is dropped; the new one goes on.
	setAll(users(acl.Admin, acl.Passwords{Current: "next-admin", Previous: creds[acl.Admin].Current}))
	next := w.Admin("test", redisadmin.Credentials{Username: acl.AdminUser, Password: "next-admin"})
	server, _ := users(acl.Admin, acl.Passwords{Current: "next-admin"})
	for _, e := range redises {
		for _, u := range server {
			if u.Name != acl.AdminUser {
				continue
			}
			if err := next.SetUser(ctx, e, u); err != nil {
				t.Fatal(err)
			}
			if err := next.PauseWrites(ctx, e, time.Second); err != nil {
				t.Fatal(err)
			}
			if err := next.ResumeWrites(ctx, e); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := a.Replication(ctx, redises[0]); err == nil || !strings.Contains(err.Error(), "WRONGPASS") {
		t.Fatalf("the old admin password after it was dropped: %v", err)
	}
	if _, err := next.Replication(ctx, redises[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := a.SentinelMaster(ctx, sentinelOf(redises[0]), masterName); err != nil {
		t.Fatalf("the sentinels still have both admin passwords: %v", err)
	}
}

// A sentinel whose peers do not accept its sentinel-pass counts them as
// unusable (they would be s_down to it); one whose master does not accept
// its auth-user/auth-pass sees the master s_down.
func TestSentinelCredentialsAreChecked(t *testing.T) {
	ctx := context.Background()
	_, w, redises := formation(t)
	a := w.Admin("test", adminCreds)
	fixAuthPass(t, a, redises)
	s := sentinelOf(redises[0])
	if err := a.SentinelCKQuorum(ctx, s, masterName); err != nil {
		t.Fatal(err)
	}
	if err := a.SentinelConfigSet(ctx, s, map[string]string{"sentinel-pass": "unknown-to-peers"}); err != nil {
		t.Fatal(err)
	}
	if err := a.SentinelCKQuorum(ctx, s, masterName); err == nil || !strings.Contains(err.Error(), "NOQUORUM 1 usable") {
		t.Fatalf("CKQUORUM with a sentinel-pass the peers refuse: %v", err)
	}
	if err := a.SentinelCKQuorum(ctx, sentinelOf(redises[1]), masterName); err != nil {
		t.Fatalf("the other sentinels still reach each other: %v", err)
	}
	if err := a.SentinelConfigSet(ctx, s, map[string]string{"no-such-setting": "x"}); err == nil {
		t.Fatal("an unknown SENTINEL CONFIG SET setting was accepted")
	}
	if got := w.SentinelConfig(s); got["sentinel-pass"] != "unknown-to-peers" || got["sentinel-user"] != acl.PeerUser ||
		got["auth-user "+masterName] != acl.MonitoringUser || got["auth-pass "+masterName] != creds[acl.Monitoring].Current {
		t.Fatalf("SentinelConfig: %v", got)
	}

	if err := a.SentinelSet(ctx, s, masterName, map[string]string{"auth-user": acl.ReplicationUser}); err != nil {
		t.Fatal(err)
	}
	if st, _ := a.SentinelMaster(ctx, s, masterName); !st.HasFlag("s_down") {
		t.Fatalf("a sentinel logging in to its master as another user: %+v", st)
	}
}

// What SetUser persisted (CONFIG REWRITE) survives a restart; a redis.conf
// the operator writes anew replaces it.
func TestUsersSurviveARestart(t *testing.T) {
	ctx := context.Background()
	f, w, redises := formation(t)
	a := w.Admin("test", adminCreds)
	e := redises[1]
	u := acl.User{Name: backend.Name, Passwords: []string{"rotated"}, Rules: backend.Rules}
	if err := a.SetUser(ctx, e, u); err != nil {
		t.Fatal(err)
	}
	if err := a.ConfigSet(ctx, e, map[string]string{"masterauth": "new-masterauth"}); err != nil {
		t.Fatal(err)
	}
	restart := func() {
		t.Helper()
		w.Crash("f-2")
		if res, _ := f.Exec(ctx, "f-2", []string{"sh", "-c", "set -e; systemctl start --no-block redis-server"}); res.ExitCode != 0 {
			t.Fatal(res.Stderr)
		}
	}
	restart()
	got, ok := w.User(e, backend.Name)
	if !ok || !got.On || !slices.Equal(got.PasswordHashes, u.Hashes()) || !slices.Equal(got.Rules, u.Rules) {
		t.Fatalf("backend user after a restart: %+v %v, want the hashes %q", got, ok, u.Hashes())
	}
	if user, pw := w.MasterAuth(e); user != acl.ReplicationUser || pw != "new-masterauth" {
		t.Fatalf("masteruser/masterauth after a restart: %q %q", user, pw)
	}

	conf, _ := f.File("f-2", redisEngine.ServerConf)
	_ = f.WriteFile(ctx, "f-2", redisEngine.ServerConf, append(conf.Content, "\n# re-rendered\n"...), 0o640, 0, 0)
	restart()
	if w.Accepts(e, backend.Name, "rotated") || !w.Accepts(e, backend.Name, creds[acl.BackendPassword].Current) {
		t.Fatal("a new redis.conf did not replace the persisted users")
	}
}

func TestRefusedRules(t *testing.T) {
	ctx := context.Background()
	f, w, redises := formation(t)
	a := w.Admin("test", adminCreds)
	w.RefuseRules("+nosuchcommand")
	tests := []struct {
		rules   []string
		wantErr string
	}{
		{[]string{"+@all", "+nosuchcommand"}, "ERR Error in ACL SETUSER modifier '+nosuchcommand': Unknown command or category name in ACL"},
		// Redis 7.0 does not know CLIENT SETINFO (engine.Engine.ClientSetInfo).
		{[]string{"-@all", "+client|setinfo"}, "ERR Error in ACL SETUSER modifier '+client|setinfo': Unknown command or category name in ACL"},
		{[]string{"bogus"}, "ERR Error in ACL SETUSER modifier 'bogus': Syntax error"},
		{[]string{"~a b"}, "Syntax error"},
		{[]string{"~app:*", "&news:*", "+get", "-@all", "%R~x"}, ""},
	}
	for _, tt := range tests {
		u := acl.User{Name: backend.Name, Passwords: []string{"pw-" + tt.wantErr}, Rules: tt.rules}
		err := a.SetUser(ctx, redises[0], u)
		if (tt.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("SetUser %q: %v, want %q", tt.rules, err, tt.wantErr)
		}
		if err != nil && (w.Accepts(redises[0], backend.Name, u.Passwords[0]) || !w.Accepts(redises[0], backend.Name, creds[acl.BackendPassword].Current)) {
			t.Errorf("SetUser %q was refused but changed the user", tt.rules)
		}
		if err := a.SentinelSetUser(ctx, sentinelOf(redises[0]), u); (tt.wantErr == "") != (err == nil) {
			t.Errorf("SentinelSetUser %q: %v, want %q", tt.rules, err, tt.wantErr)
		}
	}

	// A redis.conf with a refused rule: redis-server does not start.
	conf, err := render.RedisConf(render.Redis{Address: redises[2].Host, Port: 6379, MasterUser: "r", MasterAuth: "x",
		Users:     []acl.User{{Name: "app", Passwords: []string{"p"}, Rules: []string{"+nosuchcommand"}}},
		Maxmemory: "1gb", MaxmemoryPolicy: "allkeys-lru", AppendFsync: "everysec"})
	if err != nil {
		t.Fatal(err)
	}
	w.Crash("f-3")
	_ = f.WriteFile(ctx, "f-3", redisEngine.ServerConf, conf, 0o640, 0, 0)
	_, _ = f.Exec(ctx, "f-3", []string{"sh", "-c", "set -e; systemctl start --no-block redis-server"})
	if p := w.Problems(); len(p) != 1 || !strings.Contains(p[0], "+nosuchcommand") {
		t.Fatalf("problems: %q", p)
	}
	if _, err := a.Replication(ctx, redises[2]); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("redis-server started with a refused rule: %v", err)
	}
}

func TestUnknownCommandsFail(t *testing.T) {
	f, _, _ := formation(t)
	res, err := f.Exec(context.Background(), "f-1", []string{"sh", "-c", "set -e; rm -rf /var/lib/redis"})
	if err != nil || res.ExitCode == 0 {
		t.Fatalf("unknown script: %+v %v", res, err)
	}
}

func TestProcessesFollowTheContainer(t *testing.T) {
	ctx := context.Background()
	f, w, redises := formation(t)
	a := w.Admin("test", adminCreds)
	probeOf := func(name string) string {
		t.Helper()
		res, err := f.Exec(ctx, name, probe)
		if err != nil {
			t.Fatal(err)
		}
		return res.Stdout
	}

	// A stopped container runs nothing.
	if err := f.StopInstance(ctx, "f-2", false); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Replication(ctx, redises[1]); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("redis-server of a stopped container answers: %v", err)
	}
	if _, err := a.SentinelMaster(ctx, sentinelOf(redises[1]), masterName); err == nil {
		t.Fatal("sentinel of a stopped container answers")
	}
	// Started again: the enabled sentinel comes back with its state,
	// redis-server (not enabled) stays down.
	if err := f.StartInstance(ctx, "f-2"); err != nil {
		t.Fatal(err)
	}
	if got := probeOf("f-2"); got != "yes inactive active\n" {
		t.Fatalf("probe after a container restart: %q", got)
	}
	if st, err := a.SentinelMaster(ctx, sentinelOf(redises[1]), masterName); err != nil || st.Address != redises[0] {
		t.Fatalf("sentinel after a container restart: %+v %v", st, err)
	}
	if _, err := a.Replication(ctx, redises[1]); err == nil {
		t.Fatal("redis-server started with the container")
	}

	// Deleted and rebuilt under the same name and address: unconfigured,
	// nothing runs until the operator configures it again.
	if err := f.DeleteInstance(ctx, "f-3"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Replication(ctx, redises[2]); err == nil {
		t.Fatal("redis-server of a deleted container answers")
	}
	spec := incus.InstanceSpec{Name: "f-3", Image: "rsf-redis7-bookworm-v1", Profiles: []string{"rsf-redis"},
		Devices: map[string]map[string]string{"eth0": {"type": "nic", "network": "rsfbr0", "name": "eth0", "ipv4.address": redises[2].Host}}}
	if err := f.CreateInstance(ctx, spec); err != nil {
		t.Fatal(err)
	}
	if got := probeOf("f-3"); got != "no inactive inactive\n" {
		t.Fatalf("probe of a rebuilt member: %q", got)
	}
	if _, err := a.SentinelMaster(ctx, sentinelOf(redises[2]), masterName); err == nil {
		t.Fatal("sentinel of a rebuilt container answers")
	}
}

func TestFailoverToAChosenReplica(t *testing.T) {
	ctx := context.Background()
	f, w, redises := formation(t)
	a := w.Admin("test", adminCreds)
	fixAuthPass(t, a, redises)
	if _, err := w.Failover(masterName, "f-1"); err == nil {
		t.Fatal("the master itself was promoted")
	}
	if _, err := w.Failover(masterName, "nope"); err == nil {
		t.Fatal("an unknown instance was promoted")
	}
	epoch, err := w.Failover(masterName, "f-3")
	if err != nil || epoch != 1 {
		t.Fatalf("failover to f-3: epoch %d, %v", epoch, err)
	}
	if r, _ := a.Replication(ctx, redises[2]); !r.IsMaster() {
		t.Fatalf("f-3 not promoted: %+v", r)
	}
	for _, e := range redises[:2] {
		if r, _ := a.Replication(ctx, e); r.IsMaster() || r.Master != redises[2] || !r.LinkUp {
			t.Fatalf("%s after failover: %+v", e, r)
		}
		if st, err := a.SentinelMaster(ctx, sentinelOf(e), masterName); err != nil || st.Address != redises[2] || st.ConfigEpoch != 1 {
			t.Fatalf("sentinel %s after failover: %+v %v", e, st, err)
		}
	}
	// The master's container stops: a replica is promoted all the same;
	// the stopped sentinel keeps the old master, also after it starts.
	if err := f.StopInstance(ctx, "f-3", false); err != nil {
		t.Fatal(err)
	}
	if epoch, err := w.Failover(masterName, "f-1"); err != nil || epoch != 2 {
		t.Fatalf("failover from a stopped master: epoch %d, %v", epoch, err)
	}
	if r, _ := a.Replication(ctx, redises[1]); r.Master != redises[0] || !r.LinkUp {
		t.Fatalf("f-2 after the failover: %+v", r)
	}
	if err := f.StartInstance(ctx, "f-3"); err != nil {
		t.Fatal(err)
	}
	if st, err := a.SentinelMaster(ctx, sentinelOf(redises[2]), masterName); err != nil || st.Address != redises[2] || st.ConfigEpoch != 1 {
		t.Fatalf("the sentinel that missed the failover: %+v %v", st, err)
	}
}

// SENTINEL FAILOVER promotes the lowest non-zero replica-priority, never a
// 0, and SENTINEL REPLICAS reports the priorities.
func TestSentinelFailoverHonoursReplicaPriority(t *testing.T) {
	ctx := context.Background()
	_, w, redises := formation(t)
	a := w.Admin("test", adminCreds)
	fixAuthPass(t, a, redises)
	// f-2 would be chosen first among equals; priority 0 rules it out.
	if err := a.ConfigSet(ctx, redises[1], map[string]string{"replica-priority": "0"}); err != nil {
		t.Fatal(err)
	}
	if r, _ := a.Replication(ctx, redises[1]); r.Priority != 0 {
		t.Fatalf("f-2's INFO priority %d, want 0", r.Priority)
	}
	replicas, err := a.SentinelReplicas(ctx, sentinelOf(redises[0]), masterName)
	if err != nil || len(replicas) != 2 {
		t.Fatalf("SENTINEL REPLICAS: %+v %v", replicas, err)
	}
	got := map[endpoint.Endpoint]int{}
	for _, r := range replicas {
		got[r.Address] = r.Priority
	}
	if got[redises[1]] != 0 || got[redises[2]] != 100 {
		t.Fatalf("priorities %v, want f-2 0 and f-3 100", got)
	}
	if err := a.SentinelFailover(ctx, sentinelOf(redises[0]), masterName); err != nil {
		t.Fatal(err)
	}
	if r, _ := a.Replication(ctx, redises[2]); !r.IsMaster() {
		t.Fatalf("f-3 not promoted: %+v", r)
	}
	// Only priority-0 replicas left: no good replica.
	if err := a.ConfigSet(ctx, redises[0], map[string]string{"replica-priority": "0"}); err != nil {
		t.Fatal(err)
	}
	if err := a.SentinelFailover(ctx, sentinelOf(redises[2]), masterName); err == nil || !strings.Contains(err.Error(), "NOGOODSLAVE") {
		t.Fatalf("failover with only priority-0 replicas: %v", err)
	}
}

// TestTLS: a TLS-only member listens on its tls-port, records the files
// its processes loaded, reloads redis-server's on CONFIG SET of a TLS file
// and the sentinel's on a restart; an unreachable sentinel keeps running.
func TestTLS(t *testing.T) {
	ctx := context.Background()
	f := incusfake.New()
	w := redisfake.New()
	w.Attach(f)
	const name = "tls-1"
	if err := f.CreateInstance(ctx, incus.InstanceSpec{Name: name, Image: "rsf-redis7-bookworm-v1", Profiles: []string{"rsf-redis"}}); err != nil {
		t.Fatal(err)
	}
	inst, err := f.GetInstance(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	tls := &render.TLS{CAFile: redisEngine.TLSCAFile, MemberFile: redisEngine.TLSMemberFile}
	conf, err := render.RedisConf(render.Redis{Address: inst.IPv4, Port: 6379, Users: acl.ServerUsers(creds, backend), MasterUser: acl.ReplicationUser,
		MasterAuth: creds[acl.Replication].Current, Maxmemory: "1gb", MaxmemoryPolicy: "allkeys-lru", AppendFsync: "everysec", TLS: tls})
	if err != nil {
		t.Fatal(err)
	}
	sconf, err := render.SentinelConf(render.Sentinel{Address: inst.IPv4, Port: 26379, Users: acl.SentinelUsers(creds, backend, redisEngine),
		PeerUser: acl.PeerUser, PeerPassword: creds[acl.Peer].Current, MasterName: masterName,
		Master: endpoint.Endpoint{Host: inst.IPv4, Port: 6379}, Quorum: 1, DownAfterMs: 5000, FailoverTimeoutMs: 30000, ParallelSyncs: 1,
		AuthUser: acl.MonitoringUser, AuthPass: creds[acl.Monitoring].Current, TLS: tls})
	if err != nil {
		t.Fatal(err)
	}
	write := func(path, content string) {
		if err := f.WriteFile(ctx, name, path, []byte(content), 0o600, 0, 0); err != nil {
			t.Fatal(err)
		}
	}
	write("/etc/redis/redis.conf", string(conf))
	write("/etc/redis/sentinel.conf", string(sconf))
	write(redisEngine.TLSMemberFile, "cert-1")
	write(redisEngine.TLSCAFile, "ca-1")
	if res, err := f.Exec(ctx, name, []string{"sh", "-c", configureScript}); err != nil || res.ExitCode != 0 {
		t.Fatalf("configure: %+v %v", res, err)
	}
	if p := w.Problems(); len(p) > 0 {
		t.Fatalf("problems: %v", p)
	}
	check := func(what string, got redisfake.TLSFiles, cert, ca string) {
		t.Helper()
		if string(got.Cert) != cert || string(got.CA) != ca {
			t.Errorf("%s loaded %q %q, want %q %q", what, got.Cert, got.CA, cert, ca)
		}
	}
	st := w.TLS(name)
	check("redis-server", st.Redis, "cert-1", "ca-1")
	check("sentinel", st.Sentinel, "cert-1", "ca-1")

	a := w.Admin("t", redisadmin.Credentials{Username: acl.AdminUser, Password: creds[acl.Admin].Current})
	server, sentinel := endpoint.Endpoint{Host: inst.IPv4, Port: 6379}, endpoint.Endpoint{Host: inst.IPv4, Port: 26379}
	if _, err := a.Replication(ctx, server); err != nil {
		t.Fatalf("the tls-port does not answer: %v", err)
	}
	write(redisEngine.TLSMemberFile, "cert-2")
	write(redisEngine.TLSCAFile, "ca-2")
	if err := a.ConfigSet(ctx, server, tls.Reload()); err != nil {
		t.Fatal(err)
	}
	st = w.TLS(name)
	check("redis-server after CONFIG SET", st.Redis, "cert-2", "ca-2")
	check("sentinel before its restart", st.Sentinel, "cert-1", "ca-1")
	if st.Reloads != 1 || st.SentinelRestarts != 0 {
		t.Errorf("reloads %d, restarts %d", st.Reloads, st.SentinelRestarts)
	}
	if res, err := f.Exec(ctx, name, []string{"sh", "-c", "set -e; systemctl restart redis-sentinel"}); err != nil || res.ExitCode != 0 {
		t.Fatalf("restart: %+v %v", res, err)
	}
	st = w.TLS(name)
	check("sentinel after its restart", st.Sentinel, "cert-2", "ca-2")
	if st.SentinelRestarts != 1 {
		t.Errorf("restarts %d", st.SentinelRestarts)
	}
	if _, err := a.SentinelMaster(ctx, sentinel, masterName); err != nil {
		t.Fatalf("the restarted sentinel lost its master: %v", err)
	}
	w.SetSentinelUnreachable(name, true)
	if _, err := a.SentinelMaster(ctx, sentinel, masterName); err == nil {
		t.Fatal("an unreachable sentinel answered")
	}
	if res, _ := f.Exec(ctx, name, probe); res.Stdout != "yes active active\n" {
		t.Fatalf("probe of a member with an unreachable sentinel: %q", res.Stdout)
	}
	w.SetSentinelUnreachable(name, false)
	if _, err := a.SentinelMaster(ctx, sentinel, masterName); err != nil {
		t.Fatal(err)
	}
}
