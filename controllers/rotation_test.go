package controllers

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/internal/acl"
	"github.com/incusops/redis-sentinel-operator/internal/config"
	"github.com/incusops/redis-sentinel-operator/internal/endpoint"
	"github.com/incusops/redis-sentinel-operator/internal/engine"
	"github.com/incusops/redis-sentinel-operator/internal/redisadmin"
)

const rotatedPassword = "data-plane-pw-2"

// connectionPasswords are the backend's passwords in the connection
// Secret: REDIS_URL's and REDIS_SENTINEL_PASSWORD.
func (e *env) connectionPasswords() (redis, sentinel string) {
	e.t.Helper()
	s := e.secret(testName + "-connection")
	if s == nil {
		e.t.Fatal("no connection Secret")
	}
	u, err := url.Parse(string(s.Data[config.EnvURL]))
	if err != nil {
		e.t.Fatal(err)
	}
	pw, _ := u.User.Password()
	return pw, string(s.Data[config.EnvSentinelPassword])
}

// linksWork checks that nobody is locked out: the operator's admin
// password, the connection Secret's passwords, every replica's masterauth,
// every sentinel's auth-pass and sentinel-pass are accepted where they are
// used, on every member.
func (e *env) linksWork(f *redisv1alpha1.RedisSentinelFormation) error {
	admin := e.current(acl.Admin)
	backend, backendSentinel := e.connectionPasswords()
	for _, m := range f.Status.Members {
		redis, sentinel := redisEndpoint(m.Address), sentinelEndpoint(m.Address)
		checks := []struct {
			what       string
			at         endpoint.Endpoint
			user, pass string
		}{
			{"the operator on redis", redis, acl.AdminUser, admin},
			{"the operator on the sentinel", sentinel, acl.AdminUser, admin},
			{"the connection Secret on redis", redis, acl.DefaultBackendUser, backend},
			{"the connection Secret on the sentinel", sentinel, acl.DefaultBackendUser, backendSentinel},
		}
		if u, pw := e.world.MasterAuth(redis); m.Name != f.Status.Master.Member {
			checks = append(checks, struct {
				what       string
				at         endpoint.Endpoint
				user, pass string
			}{"replication to the master", redisEndpoint(f.Status.Master.Address), u, pw})
		}
		sc := e.world.SentinelConfig(sentinel)
		for _, other := range f.Status.Members {
			checks = append(checks, struct {
				what       string
				at         endpoint.Endpoint
				user, pass string
			}{"sentinel " + m.Name + " monitoring " + other.Name, redisEndpoint(other.Address), sc["auth-user "+f.Spec.MasterName], sc["auth-pass "+f.Spec.MasterName]},
				struct {
					what       string
					at         endpoint.Endpoint
					user, pass string
				}{"sentinel " + m.Name + " to sentinel " + other.Name, sentinelEndpoint(other.Address), sc["sentinel-user"], sc["sentinel-pass"]})
		}
		for _, c := range checks {
			if !e.world.Accepts(c.at, c.user, c.pass) {
				return fmt.Errorf("%s (%s): %s refuses user %q", m.Name, c.what, c.at, c.user)
			}
		}
	}
	return nil
}

// rotation is one way a user or an admin rotates credentials.
type rotation struct {
	name string
	// rotated are the credentials it changes.
	rotated []acl.Credential
	start   func(e *env)
}

var rotations = []rotation{
	{"the backend password", []acl.Credential{acl.BackendPassword}, func(e *env) { e.setPassword(redisSecretName, rotatedPassword) }},
	{"the backend sentinel password", []acl.Credential{acl.BackendSentinelPassword}, func(e *env) { e.setPassword(sentinelSecretName, "sentinel-pw-2") }},
	{"the internal credentials (their Secret deleted)", acl.Internal, func(e *env) {
		if err := e.client.Delete(context.Background(), e.secret(testName+"-internal-credentials")); err != nil {
			e.t.Fatal(err)
		}
	}},
}

func TestPasswordRotation(t *testing.T) {
	for _, rot := range rotations {
		for _, tc := range []struct {
			name string
			// fresh: a new reconciler (a restarted operator) for every pass.
			fresh bool
			// die: the operator dies after the actions of the pass that adds
			// the new passwords, before its status write.
			die bool
		}{
			{"one operator", false, false},
			{"an operator restarted between every two passes", true, false},
			{"an operator that died before recording the rotation in status", true, true},
		} {
			t.Run(rot.name+"/"+tc.name, func(t *testing.T) { testRotation(t, rot, tc.fresh, tc.die) })
		}
	}
}

func testRotation(t *testing.T, rot rotation, fresh, die bool) {
	e := standardEnv(t)
	r := e.newReconciler()
	next := func() *FormationReconciler {
		if fresh {
			return e.newReconciler()
		}
		return r
	}
	e.converge(next(), testKey, 40)
	failovers := e.formation(testKey).Status.Failovers
	before := map[acl.Credential]string{}
	for _, c := range acl.All {
		before[c] = e.current(c)
	}

	rot.start(e)
	var passAt time.Time
	var recorded bool
	// After every pass nobody is locked out, nothing is degraded by
	// authentication and nothing failed over.
	invariant := func(pass int) {
		t.Helper()
		f := e.formation(testKey)
		if err := e.linksWork(f); err != nil {
			t.Fatalf("pass %d: %v", pass, err)
		}
		for _, c := range f.Status.Conditions {
			if c.Type == redisv1alpha1.ConditionDegraded && c.Status == "True" {
				t.Fatalf("pass %d: Degraded %s: %s", pass, c.Reason, c.Message)
			}
		}
		if f.Status.Failovers != failovers {
			t.Fatalf("pass %d: the rotation failed over", pass)
		}
		state := e.secret(testName + "-password-state").Data
		if prev := state[string(rot.rotated[0])+previousSuffix]; prev != nil && f.Status.PasswordRotation != nil && !recorded {
			recorded = true
			for _, c := range rot.rotated {
				if string(state[string(c)+previousSuffix]) != before[c] || string(state[string(c)]) == before[c] {
					t.Fatalf("pass %d: state of %s not rotated", pass, c)
				}
			}
			pr := f.Status.PasswordRotation
			// metav1.Time keeps whole seconds: rounded up, the grace is
			// never cut short.
			if !pr.RetireAt.Time.Equal(ceilSecond(passAt.Add(e.opts.PasswordGrace))) || pr.RetireAt.Time.Before(passAt.Add(e.opts.PasswordGrace)) || pr.StateSecretName != testName+"-password-state" || len(pr.Credentials) != len(rot.rotated) {
				t.Fatalf("pass %d: passwordRotation %+v, want retireAt %s", pass, pr, passAt.Add(e.opts.PasswordGrace))
			}
		}
	}
	nextTimed := func() *FormationReconciler { passAt = e.clock.Now(); return next() }
	rotatedNow := func() bool {
		for _, c := range rot.rotated {
			if e.current(c) == before[c] {
				return false
			}
		}
		return isReady(e.formation(testKey))
	}
	if die {
		// The pass that generates a deleted internal Secret is not the one
		// that rotates.
		if e.secret(testName+"-internal-credentials") == nil {
			e.passesUntil(nextTimed, testKey, 5, func() bool { return e.secret(testName+"-internal-credentials") != nil }, invariant)
		}
		e.dieBeforeStatusWrite.Store(true)
		if _, err := e.reconcile(next(), testKey); err == nil {
			t.Fatal("the pass survived its status write")
		}
		if !rotatedNow() {
			t.Fatal("the dying pass did not rotate")
		}
		if f := e.formation(testKey); f.Status.PasswordRotation != nil {
			t.Fatalf("status written by the dying pass: %+v", f.Status.PasswordRotation)
		}
		invariant(0)
		e.clock.Advance(time.Second)
	}

	// Until the operator and backends use the new passwords.
	e.passesUntil(nextTimed, testKey, 20, rotatedNow, invariant)
	e.passesUntil(nextTimed, testKey, 5, func() bool { return e.formation(testKey).Status.PasswordRotation != nil }, invariant)
	if !recorded {
		t.Fatal("the state Secret never recorded the previous passwords")
	}
	f := e.formation(testKey)
	retireAt := f.Status.PasswordRotation.RetireAt.Time
	// During the grace the old ones are accepted too, however many passes run.
	for range 5 {
		res, err := e.reconcile(next(), testKey)
		if err != nil {
			t.Fatal(err)
		}
		invariant(0)
		if res.RequeueAfter <= 0 || res.RequeueAfter > e.opts.ResyncPeriod {
			t.Fatalf("requeue %+v during the grace", res)
		}
		e.clock.Advance(time.Second)
	}
	if rot.rotated[0] == acl.BackendPassword {
		for _, m := range f.Status.Members {
			if got := e.world.UserPasswords(redisEndpoint(m.Address), acl.DefaultBackendUser, testPassword, rotatedPassword); len(got) != 2 {
				t.Fatalf("during the grace %s accepts %q", m.Name, got)
			}
		}
	}

	// Past retireAt: the old passwords are refused, then forgotten.
	e.clock.Advance(retireAt.Sub(e.clock.Now()) + time.Second)
	e.passesUntil(next, testKey, 10, func() bool {
		f := e.formation(testKey)
		return f.Status.PasswordRotation == nil && isReady(f)
	}, invariant)
	f = e.formation(testKey)
	state := e.secret(testName + "-password-state").Data
	for _, c := range rot.rotated {
		if state[string(c)+previousSuffix] != nil {
			t.Fatalf("state after the grace keeps the previous %s", c)
		}
	}
	for _, m := range f.Status.Members {
		old := map[acl.Credential]struct {
			at   endpoint.Endpoint
			user string
		}{
			acl.BackendPassword:         {redisEndpoint(m.Address), acl.DefaultBackendUser},
			acl.BackendSentinelPassword: {sentinelEndpoint(m.Address), acl.DefaultBackendUser},
			acl.Admin:                   {redisEndpoint(m.Address), acl.AdminUser},
			acl.Replication:             {redisEndpoint(m.Address), acl.ReplicationUser},
			acl.Monitoring:              {redisEndpoint(m.Address), acl.MonitoringUser},
			acl.Peer:                    {sentinelEndpoint(m.Address), acl.PeerUser},
		}
		for _, c := range rot.rotated {
			if e.world.Accepts(old[c].at, old[c].user, before[c]) {
				t.Fatalf("%s: user %s still accepts its previous password after the grace", m.Name, old[c].user)
			}
		}
	}
	// Every sentinel still reaches its master.
	for _, m := range f.Status.Members {
		st, err := e.admin().SentinelMaster(context.Background(), sentinelEndpoint(m.Address), f.Spec.MasterName)
		if err != nil || st.HasFlag("s_down") {
			t.Fatalf("sentinel %s after the rotation: %+v %v", m.Name, st, err)
		}
	}
	if !meta.IsStatusConditionTrue(f.Status.Conditions, redisv1alpha1.ConditionReady) {
		t.Fatalf("not Ready: %s", describe(f))
	}
}

// orderedAdmin records the steps of a rotation, in order.
type orderedAdmin struct {
	redisadmin.Admin
	log *[]string
}

func (a orderedAdmin) SetUser(ctx context.Context, server endpoint.Endpoint, u acl.User) error {
	*a.log = append(*a.log, "user")
	return a.Admin.SetUser(ctx, server, u)
}

func (a orderedAdmin) SentinelSetUser(ctx context.Context, sentinel endpoint.Endpoint, u acl.User) error {
	*a.log = append(*a.log, "user")
	return a.Admin.SentinelSetUser(ctx, sentinel, u)
}

func (a orderedAdmin) ConfigSet(ctx context.Context, server endpoint.Endpoint, settings map[string]string) error {
	if _, ok := settings["masterauth"]; ok {
		*a.log = append(*a.log, "link")
	}
	return a.Admin.ConfigSet(ctx, server, settings)
}

func (a orderedAdmin) SentinelSet(ctx context.Context, sentinel endpoint.Endpoint, name string, settings map[string]string) error {
	if _, ok := settings["auth-pass"]; ok {
		*a.log = append(*a.log, "link")
	}
	return a.Admin.SentinelSet(ctx, sentinel, name, settings)
}

func (a orderedAdmin) SentinelConfigSet(ctx context.Context, sentinel endpoint.Endpoint, settings map[string]string) error {
	if _, ok := settings["sentinel-pass"]; ok {
		*a.log = append(*a.log, "link")
	}
	return a.Admin.SentinelConfigSet(ctx, sentinel, settings)
}

type orderedDialer struct {
	*forgettingWorld
	log []string
}

func (d *orderedDialer) Admin(owner string, creds redisadmin.Credentials) redisadmin.Admin {
	return orderedAdmin{Admin: d.forgettingWorld.Admin(owner, creds), log: &d.log}
}

// A link given a new password reconnects at once; a server that does not
// accept it yet refuses it, and real Sentinel does not retry a refused
// replica. So every user on every member accepts the new passwords before
// any link (masterauth, auth-pass, sentinel-pass) uses one.
func TestRotationGivesEveryUserThePasswordBeforeAnyLink(t *testing.T) {
	e := standardEnv(t)
	d := &orderedDialer{forgettingWorld: e.dialer}
	r := e.newReconciler()
	r.Redis = d
	e.converge(r, testKey, 40)
	if err := e.client.Delete(context.Background(), e.secret(testName+"-internal-credentials")); err != nil {
		t.Fatal(err)
	}
	for range 2 { // generate, then rotate
		d.log = nil
		if _, err := e.reconcile(r, testKey); err != nil {
			t.Fatal(err)
		}
	}
	got := strings.Join(d.log, ",")
	users := 3 * (len(acl.ServerUsers(acl.Set{}, backendUser(e.formation(testKey)))) + len(acl.SentinelUsers(acl.Set{}, backendUser(e.formation(testKey)), engine.Engine{})))
	want := strings.TrimSuffix(strings.Repeat("user,", users)+strings.Repeat("link,", 9), ",")
	if got != want {
		t.Fatalf("rotation steps %s, want %s", got, want)
	}
}
