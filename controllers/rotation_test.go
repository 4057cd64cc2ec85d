package controllers

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/internal/config"
	"github.com/incusops/redis-sentinel-operator/internal/endpoint"
	"github.com/incusops/redis-sentinel-operator/internal/redisadmin"
)

const rotatedPassword = "data-plane-pw-2"

// connectionPassword is the data-plane password in the connection Secret's
// REDIS_URL.
func (e *env) connectionPassword() string {
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
	return pw
}

// accepts reports which members' redis-servers accept password (an error
// names the first that refuses it).
func (e *env) accepts(f *redisv1alpha1.RedisSentinelFormation, password string) error {
	a := e.admin(password)
	for _, m := range f.Status.Members {
		if _, err := a.Replication(context.Background(), redisEndpoint(m.Address)); err != nil {
			return err
		}
	}
	return nil
}

func TestPasswordRotation(t *testing.T) {
	for _, tc := range []struct {
		name string
		// fresh: a new reconciler (a restarted operator) for every pass.
		fresh bool
		// die: the operator dies after the actions of the pass that adds
		// the new password, before its status write.
		die bool
	}{
		{"one operator", false, false},
		{"an operator restarted between every two passes", true, false},
		{"an operator that died before recording the rotation in status", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := standardEnv(t)
			r := e.newReconciler()
			next := func() *FormationReconciler {
				if tc.fresh {
					return e.newReconciler()
				}
				return r
			}
			e.converge(next(), testKey, 40)
			failovers := e.formation(testKey).Status.Failovers

			e.setPassword(redisSecretName, rotatedPassword)
			var passAt time.Time
			var recorded bool
			// After every pass: the password the operator uses (the state
			// Secret's) and the one backends are given are accepted by every
			// member, and nothing is degraded by authentication.
			invariant := func(pass int) {
				t.Helper()
				f := e.formation(testKey)
				using := e.currentPassword()
				if err := e.accepts(f, using); err != nil {
					t.Fatalf("pass %d: a member refuses the password the operator uses: %v", pass, err)
				}
				if err := e.accepts(f, e.connectionPassword()); err != nil {
					t.Fatalf("pass %d: a member refuses the connection Secret's password: %v", pass, err)
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
				if prev := state[stateKeyPrevious]; prev != nil && f.Status.PasswordRotation != nil && !recorded {
					recorded = true
					if string(state[stateKeyPassword]) != rotatedPassword || string(prev) != testPassword {
						t.Fatalf("pass %d: state %q", pass, state)
					}
					pr := f.Status.PasswordRotation
					// metav1.Time keeps whole seconds.
					if pr == nil || !pr.RetireAt.Time.Equal(passAt.Add(e.opts.PasswordGrace).Truncate(time.Second)) || pr.StateSecretName != testName+"-password-state" {
						t.Fatalf("pass %d: passwordRotation %+v, want retireAt %s", pass, pr, passAt.Add(e.opts.PasswordGrace))
					}
					if !tc.die && e.connectionPassword() != testPassword {
						t.Fatalf("pass %d: the connection Secret changed in the pass that added the password", pass)
					}
				}
			}
			nextTimed := func() *FormationReconciler { passAt = e.clock.Now(); return next() }
			if tc.die {
				e.dieBeforeStatusWrite.Store(true)
				if _, err := e.reconcile(next(), testKey); err == nil {
					t.Fatal("the pass survived its status write")
				}
				state := e.secret(testName + "-password-state").Data
				if string(state[stateKeyPassword]) != rotatedPassword || string(state[stateKeyPrevious]) != testPassword {
					t.Fatalf("the dying pass did not add the password: state %q", state)
				}
				if f := e.formation(testKey); f.Status.PasswordRotation != nil {
					t.Fatalf("status written by the dying pass: %+v", f.Status.PasswordRotation)
				}
				invariant(0)
				e.clock.Advance(time.Second)
			}

			// Until backends get the new password.
			e.passesUntil(nextTimed, testKey, 20, func() bool {
				return e.connectionPassword() == rotatedPassword && isReady(e.formation(testKey))
			}, invariant)
			if !recorded {
				t.Fatal("the state Secret never recorded the previous password")
			}
			f := e.formation(testKey)
			retireAt := f.Status.PasswordRotation.RetireAt.Time
			// During the grace both are accepted, however many passes run.
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
			for _, pw := range []string{testPassword, rotatedPassword} {
				if err := e.accepts(f, pw); err != nil {
					t.Fatalf("during the grace: %v", err)
				}
			}
			if got := e.secret(testName + "-password-state").Data; string(got[stateKeyPrevious]) != testPassword {
				t.Fatalf("state during the grace: %q", got)
			}

			// Past retireAt: the old password is refused, then forgotten.
			e.clock.Advance(retireAt.Sub(e.clock.Now()) + time.Second)
			e.passesUntil(next, testKey, 10, func() bool {
				f := e.formation(testKey)
				return f.Status.PasswordRotation == nil && isReady(f)
			}, invariant)
			f = e.formation(testKey)
			if err := e.accepts(f, testPassword); err == nil || !strings.Contains(err.Error(), "WRONGPASS") {
				t.Fatalf("the old password after the grace: %v", err)
			}
			if err := e.accepts(f, rotatedPassword); err != nil {
				t.Fatal(err)
			}
			state := e.secret(testName + "-password-state").Data
			if string(state[stateKeyPassword]) != rotatedPassword || state[stateKeyPrevious] != nil {
				t.Fatalf("state after the grace: %q", state)
			}
			if e.connectionPassword() != rotatedPassword {
				t.Fatal("connection Secret lost the new password")
			}
			// Every sentinel still reaches its master (auth-pass follows).
			a := e.admin(rotatedPassword)
			for _, m := range f.Status.Members {
				st, err := a.SentinelMaster(context.Background(), sentinelEndpoint(m.Address), f.Spec.MasterName)
				if err != nil || st.HasFlag("s_down") {
					t.Fatalf("sentinel %s after the rotation: %+v %v", m.Name, st, err)
				}
			}
			if !meta.IsStatusConditionTrue(f.Status.Conditions, redisv1alpha1.ConditionReady) {
				t.Fatalf("not Ready: %s", describe(f))
			}
		})
	}
}

// orderedAdmin records the password steps of a rotation, in order.
type orderedAdmin struct {
	redisadmin.Admin
	log *[]string
}

func (a orderedAdmin) AddPassword(ctx context.Context, server endpoint.Endpoint, password string) error {
	*a.log = append(*a.log, "AddPassword")
	return a.Admin.AddPassword(ctx, server, password)
}

func (a orderedAdmin) SentinelSet(ctx context.Context, sentinel endpoint.Endpoint, name string, settings map[string]string) error {
	if _, ok := settings["auth-pass"]; ok {
		*a.log = append(*a.log, "SentinelSet auth-pass")
	}
	return a.Admin.SentinelSet(ctx, sentinel, name, settings)
}

type orderedDialer struct {
	*forgettingWorld
	log []string
}

func (d *orderedDialer) Admin(owner string, creds redisadmin.Credentials) redisadmin.Admin {
	return orderedAdmin{Admin: d.forgettingWorld.Admin(owner, creds), log: &d.log}
}

// A sentinel given the new auth-pass reconnects at once; a redis-server
// that does not know the new password yet refuses it and real Sentinel
// does not retry, so every server must have it before any sentinel does.
func TestRotationGivesEveryServerThePasswordBeforeAnySentinel(t *testing.T) {
	e := standardEnv(t)
	d := &orderedDialer{forgettingWorld: e.dialer}
	r := e.newReconciler()
	r.Redis = d
	e.converge(r, testKey, 40)
	d.log = nil
	e.setPassword(redisSecretName, rotatedPassword)
	if _, err := e.reconcile(r, testKey); err != nil {
		t.Fatal(err)
	}
	want := []string{"AddPassword", "AddPassword", "AddPassword", "SentinelSet auth-pass", "SentinelSet auth-pass", "SentinelSet auth-pass"}
	if strings.Join(d.log, ",") != strings.Join(want, ",") {
		t.Fatalf("rotation steps %v, want %v", d.log, want)
	}
}
