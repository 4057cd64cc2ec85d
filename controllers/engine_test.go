package controllers

import (
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/internal/engine"
)

// engineOf is the engine a member's instance was built to run.
func (e *env) engineOf(f *redisv1alpha1.RedisSentinelFormation, member string) engine.Name {
	e.t.Helper()
	return engine.MustOf(engine.Name(e.instances(f)[member].Config[engine.Property])).Name
}

// toValkey is the change a user makes to migrate: the engine, and the
// image back to the engine's own (the harness spells the Redis image out).
func toValkey(f *redisv1alpha1.RedisSentinelFormation) {
	f.Spec.Engine = redisv1alpha1.EngineValkey
	f.Spec.Incus.Image = ""
}

func TestEngineMigration(t *testing.T) {
	e := standardEnv(t)
	r := e.newReconciler()
	e.converge(r, testKey, 40)
	f := e.formation(testKey)
	initialMaster, failovers0 := f.Status.Master.Member, f.Status.Failovers
	created := map[string]bool{}
	for name, inst := range e.instances(f) {
		created[name+inst.CreatedAt.String()] = true
	}

	// The engine alone, with the Redis image still named: refused with
	// the image's own engine, nothing replaced.
	e.updateFormation(testKey, func(f *redisv1alpha1.RedisSentinelFormation) { f.Spec.Engine = redisv1alpha1.EngineValkey })
	for range 5 {
		e.advanceFor(e.reconcile(r, testKey))
	}
	f = e.formation(testKey)
	c := meta.FindStatusCondition(f.Status.Conditions, redisv1alpha1.ConditionDegraded)
	if c == nil || c.Reason != ReasonImageEngineMismatch || !strings.Contains(c.Message, `image "rsf-redis7-bookworm-v1" runs redis`) || !strings.Contains(c.Message, "unset spec.incus.image") {
		t.Fatalf("Degraded %+v, want %s naming the image\n%s", c, ReasonImageEngineMismatch, describe(f))
	}
	for name, inst := range e.instances(f) {
		if !created[name+inst.CreatedAt.String()] {
			t.Fatalf("member %s was replaced while its image was refused", name)
		}
	}

	e.updateFormation(testKey, toValkey)
	var replaced []string
	valkeyMastered := false
	e.convergeWith(func() *FormationReconciler { return r }, testKey, 150, func(pass int) {
		f := e.formation(testKey)
		for name, inst := range e.instances(f) {
			if inst.Config[engine.Property] == "valkey" && !slices.Contains(replaced, name) {
				replaced = append(replaced, name)
			}
		}
		master, _ := e.masterOfWorld(f)
		holder := memberAtAddr(f, master.Host)
		if holder == "" {
			return
		}
		switch e.engineOf(f, holder) {
		case engine.Valkey:
			valkeyMastered = true
		case engine.Redis:
			if valkeyMastered {
				t.Fatalf("pass %d: Sentinel promoted %s, a Redis member, after a Valkey master\n%s", pass, holder, describe(f))
			}
		}
		// A Redis member following a Valkey master is stale from the
		// moment it follows it: never promotable.
		for _, m := range f.Status.Members {
			if m.Address == "" || e.engineOf(f, m.Name) != engine.Redis {
				continue
			}
			st, err := e.admin().Replication(e.ctx(), redisEndpoint(m.Address))
			if err != nil || st.IsMaster() {
				continue
			}
			if following := memberAtAddr(f, st.Master.Host); following != "" && e.engineOf(f, following) == engine.Valkey && st.Priority != 0 {
				t.Fatalf("pass %d: %s (redis) follows %s (valkey) with replica-priority %d; replaced %v\n%s", pass, m.Name, following, st.Priority, replaced, describe(f))
			}
		}
	})

	f = e.formation(testKey)
	if len(replaced) != 3 || replaced[2] != initialMaster {
		t.Fatalf("migrated in order %v; the first master %s must be last", replaced, initialMaster)
	}
	for _, m := range f.Status.Members {
		if m.Engine != redisv1alpha1.EngineValkey {
			t.Errorf("member %s: status engine %q, want valkey", m.Name, m.Engine)
		}
	}
	if f.Status.Failovers != failovers0+1 {
		t.Errorf("failovers %d, want exactly one more than %d", f.Status.Failovers, failovers0)
	}
	if p := e.world.Problems(); len(p) > 0 {
		t.Errorf("members met configuration problems: %v", p)
	}
}

// TestStaleMembersAfterAnUnplannedFailover: Sentinel promotes a migrated
// member by itself half-way through; the Redis members left cannot sync
// from it, so they get replica-priority 0 at once and are replaced one at
// a time, and the formation ends Ready on Valkey.
func TestStaleMembersAfterAnUnplannedFailover(t *testing.T) {
	e := standardEnv(t)
	r := e.newReconciler()
	e.converge(r, testKey, 40)
	e.updateFormation(testKey, toValkey)
	var migrated string
	e.passesUntil(func() *FormationReconciler { return r }, testKey, 60, func() bool {
		f := e.formation(testKey)
		for _, m := range f.Status.Members {
			if e.engineOf(f, m.Name) == engine.Valkey && m.Health == redisv1alpha1.HealthHealthy {
				migrated = m.Name
				return true
			}
		}
		return false
	}, nil)

	f := e.formation(testKey)
	if _, err := e.world.Failover(f.Spec.MasterName, e.instances(f)[migrated].Name); err != nil {
		t.Fatal(err)
	}
	var stale []string
	for _, m := range f.Status.Members {
		if m.Name != migrated {
			stale = append(stale, m.Name)
		}
	}
	// The next pass sees the stale members and sets their priority.
	e.advanceFor(e.reconcile(r, testKey))
	f = e.formation(testKey)
	for _, name := range stale {
		if e.engineOf(f, name) != engine.Redis {
			continue // already replaced in that pass
		}
		st, err := e.admin().Replication(e.ctx(), redisEndpoint(findMember(f.Status.Members, name).Address))
		if err != nil || st.LinkUp || st.Priority != 0 {
			t.Fatalf("stale member %s: link up %v, replica-priority %d, err %v; want its link down and priority 0", name, st.LinkUp, st.Priority, err)
		}
	}
	e.convergeWith(func() *FormationReconciler { return r }, testKey, 150, func(pass int) {
		f := e.formation(testKey)
		if master, _ := e.masterOfWorld(f); memberAtAddr(f, master.Host) != "" && e.engineOf(f, memberAtAddr(f, master.Host)) == engine.Redis {
			t.Fatalf("pass %d: a stale Redis member was promoted\n%s", pass, describe(f))
		}
	})
	f = e.formation(testKey)
	for _, m := range f.Status.Members {
		if m.Engine != redisv1alpha1.EngineValkey {
			t.Errorf("member %s still runs %s", m.Name, m.Engine)
		}
	}
}

// TestMigrationWithoutTheEngineImage: the Valkey image is not on the
// host: the condition names it and no member is replaced.
func TestMigrationWithoutTheEngineImage(t *testing.T) {
	e := standardEnv(t)
	r := e.newReconciler()
	e.converge(r, testKey, 40)
	e.incus.SetImageAlias("rsf-valkey8-bookworm-v1", false)
	e.updateFormation(testKey, toValkey)
	for range 5 {
		e.advanceFor(e.reconcile(r, testKey))
	}
	f := e.formation(testKey)
	c := meta.FindStatusCondition(f.Status.Conditions, redisv1alpha1.ConditionDegraded)
	if c == nil || c.Reason != ReasonImageMissing || !strings.Contains(c.Message, `"rsf-valkey8-bookworm-v1"`) {
		t.Fatalf("Degraded %+v, want %s naming the Valkey image\n%s", c, ReasonImageMissing, describe(f))
	}
	for _, m := range f.Status.Members {
		if e.engineOf(f, m.Name) != engine.Redis || m.Health != redisv1alpha1.HealthHealthy {
			t.Fatalf("member %s touched while the image is missing\n%s", m.Name, describe(f))
		}
	}
}

// TestMigrationWaitsForAHealthyFormation: a migration started while a
// sentinel does not answer replaces nothing and says why.
func TestMigrationWaitsForAHealthyFormation(t *testing.T) {
	e := standardEnv(t)
	r := e.newReconciler()
	e.converge(r, testKey, 40)
	e.world.SetSentinelUnreachable(testInstance(2), true)
	e.updateFormation(testKey, toValkey)
	for range 6 {
		e.advanceFor(e.reconcile(r, testKey))
	}
	f := e.formation(testKey)
	for _, m := range f.Status.Members {
		if e.engineOf(f, m.Name) != engine.Redis {
			t.Fatalf("member %s replaced while a sentinel did not answer", m.Name)
		}
	}
	c := meta.FindStatusCondition(f.Status.Conditions, redisv1alpha1.ConditionProgressing)
	if c == nil || !strings.Contains(c.Message, "migrating to valkey (3 of 3 members still run another engine); the next member is replaced once the formation is healthy") {
		t.Fatalf("Progressing %+v, want it to say the migration waits\n%s", c, describe(f))
	}
	e.world.SetSentinelUnreachable(testInstance(2), false)
	e.converge(r, testKey, 150)
	f = e.formation(testKey)
	for _, m := range f.Status.Members {
		if m.Engine != redisv1alpha1.EngineValkey {
			t.Errorf("member %s still runs %s", m.Name, m.Engine)
		}
	}
}
