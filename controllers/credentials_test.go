package controllers

import (
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/internal/acl"
)

// backendRules are the backend user's rules on every member's redis-server
// (or the first difference).
func (e *env) backendRules(f *redisv1alpha1.RedisSentinelFormation) ([]string, string) {
	var rules []string
	for i, m := range f.Status.Members {
		u, ok := e.world.User(redisEndpoint(m.Address), acl.DefaultBackendUser)
		if !ok {
			return nil, m.Name + " has no backend user"
		}
		if i > 0 && !slices.Equal(u.Rules, rules) {
			return nil, m.Name + " runs other backend rules than " + f.Status.Members[0].Name
		}
		rules = u.Rules
	}
	return rules, ""
}

// A new formation's members start with a backend user allowed nothing, and
// get the spec's rules live once all of them answer: a rule set
// redis-server refuses can never keep a member from starting.
func TestBackendRulesStartClosedAndAreAppliedLive(t *testing.T) {
	e := standardEnv(t)
	e.converge(e.newReconciler(), testKey, 40)
	f := e.formation(testKey)
	if !slices.Equal(f.Status.BackendRules, acl.DefaultBackendRules) {
		t.Fatalf("status.backendRules %v", f.Status.BackendRules)
	}
	if rules, bad := e.backendRules(f); bad != "" || !slices.Equal(rules, acl.DefaultBackendRules) {
		t.Fatalf("members run %v %s", rules, bad)
	}
	for _, name := range e.incus.Names() {
		conf, _ := e.incus.File(name, redisEngine.ServerConf)
		var line string
		for _, l := range strings.Split(string(conf.Content), "\n") {
			if strings.HasPrefix(l, `user "backend" `) {
				line = l
			}
		}
		if !strings.HasSuffix(line, `"resetkeys" "resetchannels" "-@all"`) {
			t.Fatalf("%s was rendered with a backend user allowed more than nothing: %q", name, line)
		}
	}
}

// A rule set the API server accepts but redis-server refuses is reported
// and changes nothing; fixing the spec applies the fix.
func TestRefusedBackendRulesKeepThePreviousOnes(t *testing.T) {
	e := standardEnv(t)
	r := e.newReconciler()
	e.converge(r, testKey, 40)
	e.world.RefuseRules("+nosuchcommand")
	e.updateFormation(testKey, func(f *redisv1alpha1.RedisSentinelFormation) {
		f.Spec.Auth.BackendUser.Rules = []string{"~*", "+get", "+nosuchcommand"}
	})
	var f *redisv1alpha1.RedisSentinelFormation
	for range 5 {
		res, err := e.reconcile(r, testKey)
		e.advanceFor(res, err)
		f = e.formation(testKey)
	}
	c := meta.FindStatusCondition(f.Status.Conditions, redisv1alpha1.ConditionDegraded)
	if c == nil || c.Status != "True" || c.Reason != ReasonCredentialsRefused || !strings.Contains(c.Message, "nosuchcommand") {
		t.Fatalf("Degraded %+v", c)
	}
	if !slices.Equal(f.Status.BackendRules, acl.DefaultBackendRules) {
		t.Fatalf("status.backendRules %v", f.Status.BackendRules)
	}
	if rules, bad := e.backendRules(f); bad != "" || !slices.Equal(rules, acl.DefaultBackendRules) {
		t.Fatalf("members run %v %s", rules, bad)
	}
	if f.Status.Phase == redisv1alpha1.PhaseReady {
		t.Fatal("Ready with rules not applied")
	}

	fixed := []string{"~*", "+get", "+set"}
	e.updateFormation(testKey, func(f *redisv1alpha1.RedisSentinelFormation) { f.Spec.Auth.BackendUser.Rules = fixed })
	e.converge(r, testKey, 20)
	f = e.formation(testKey)
	if rules, bad := e.backendRules(f); bad != "" || !slices.Equal(rules, fixed) || !slices.Equal(f.Status.BackendRules, fixed) {
		t.Fatalf("members run %v %s; status %v", rules, bad, f.Status.BackendRules)
	}
}

func TestRotationTarget(t *testing.T) {
	state := acl.Set{
		acl.BackendPassword: {Current: "b2", Previous: "b1"}, // in its grace
		acl.Admin:           {Current: "a1"},
	}
	for _, tc := range []struct {
		name        string
		desired     map[acl.Credential]string
		want        acl.Set
		wantChanged []string
	}{
		{"nothing changed: the state, predecessors kept", map[acl.Credential]string{acl.BackendPassword: "b2", acl.Admin: "a1"}, state, nil},
		{"one changed: the new one, the current as predecessor", map[acl.Credential]string{acl.BackendPassword: "b2", acl.Admin: "a2"},
			acl.Set{acl.BackendPassword: {Current: "b2", Previous: "b1"}, acl.Admin: {Current: "a2", Previous: "a1"}}, []string{"admin"}},
		{"changed again within its grace: the newest supersedes, the oldest is dropped", map[acl.Credential]string{acl.BackendPassword: "b3", acl.Admin: "a1"},
			acl.Set{acl.BackendPassword: {Current: "b3", Previous: "b2"}, acl.Admin: {Current: "a1"}}, []string{"backend"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, changed := rotationTarget(state, tc.desired)
			for _, c := range []acl.Credential{acl.BackendPassword, acl.Admin} {
				if got[c] != tc.want[c] {
					t.Errorf("%s: %+v, want %+v", c, got[c], tc.want[c])
				}
			}
			if !slices.Equal(changed, tc.wantChanged) {
				t.Errorf("changed %v, want %v", changed, tc.wantChanged)
			}
		})
	}
}
