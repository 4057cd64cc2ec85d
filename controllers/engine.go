package controllers

import (
	"fmt"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/internal/engine"
	"github.com/incusops/redis-sentinel-operator/internal/topology"
)

// formationEngine is the engine spec.engine names.
func formationEngine(f *redisv1alpha1.RedisSentinelFormation) engine.Engine {
	return engine.MustOf(engine.Name(f.Spec.Engine))
}

// formationImage is the image members are created from: spec.incus.image,
// else the engine's lab image.
func formationImage(f *redisv1alpha1.RedisSentinelFormation) string {
	if f.Spec.Incus.Image != "" {
		return f.Spec.Incus.Image
	}
	return formationEngine(f).DefaultImage
}

// engine is what the member's container was built to run (its
// engine.Property key; see engine.Lookup).
func (m *memberObs) engine() engine.Engine {
	if m.instance == nil {
		return engine.Lookup("")
	}
	return engine.Lookup(engine.Name(m.instance.Config[engine.Property]))
}

// imageEngineMismatch says why the formation's image cannot serve its
// engine ("" when it can, or when the image does not name its engine).
func imageEngineMismatch(f *redisv1alpha1.RedisSentinelFormation, props map[string]string) string {
	want := formationEngine(f).Name
	got := engine.Name(props[engine.Property])
	if got == "" || got == want {
		return ""
	}
	fix := "unset spec.incus.image to use " + formationEngine(f).DefaultImage
	if f.Spec.Incus.Image == "" {
		fix = "rebuild the image"
	}
	return fmt.Sprintf("image %q runs %s (its %s property) but spec.engine is %s; nothing is created or replaced until it matches (%s)",
		formationImage(f), got, engine.Property, want, fix)
}

// staleMembers are the members whose engine cannot replicate from the
// master's (a Redis member once a Valkey member is master): a full sync
// always fails, so their copy stops at the switch or at their next full
// sync (a partial resync may carry a demoted master on for a while), and
// Sentinel must never promote them. Each also makes the master send it a
// whole RDB at every retry until it is replaced.
func staleMembers(o *observation, tp topology.Plan) []*memberObs {
	master := masterMember(o, tp)
	if master == nil {
		return nil
	}
	var out []*memberObs
	for _, m := range o.members {
		if m != master && m.instance != nil && !m.unreadable() && !m.engine().CanReplicateFrom(master.engine()) {
			out = append(out, m)
		}
	}
	return out
}

// rolloutWhat names what replacing the outdated (or misplaced) members
// carries out.
func rolloutWhat(f *redisv1alpha1.RedisSentinelFormation, old []*memberObs) string {
	want := formationEngine(f).Name
	migrating := 0
	for _, m := range old {
		if m.engine().Name != want {
			migrating++
		}
	}
	if migrating > 0 {
		return fmt.Sprintf("migrating to %s (%d of %d members still run another engine)", want, migrating, int(f.Spec.Members))
	}
	if len(outdated(f, old)) == 0 {
		return fmt.Sprintf("spreading the members over the cluster again (%d of %d members to move)", len(old), int(f.Spec.Members))
	}
	return fmt.Sprintf("rolling out a new container spec (%d of %d members to replace)", len(old), int(f.Spec.Members))
}

// decideStalePriority sets replica-priority 0 on stale members, which
// Sentinel then never promotes: their copy stopped when a master of a
// newer engine took over (and a failed full sync may have emptied it).
// They are replaced as soon as the formation allows (replaceOutdated).
func decideStalePriority(p *plan, o *observation) {
	for _, m := range staleMembers(o, p.topology) {
		if m.redisUp() && !m.Repl.IsMaster() && m.Repl.Priority != 0 {
			p.add(action{kind: actSetPriority, member: m.name, target: m.Redis, settings: map[string]string{replicaPriorityKey: "0"},
				reason: fmt.Sprintf("it runs %s, which cannot take a full sync from the %s master: Sentinel must never promote its stale copy", m.engine().Name, masterMember(o, p.topology).engine().Name)})
		}
	}
}

// outgoingMasterSettings are set on a master a planned failover moves the
// role away from: replica-priority 0 when it runs an older engine than a
// replica Sentinel may promote (an engine migration's last step). Sentinel
// turns the old master into a replica of the new one by itself, and from
// then on its copy is stale; its priority cannot wait for the next pass.
func outgoingMasterSettings(o *observation, master *memberObs) map[string]string {
	for _, m := range o.members {
		if m != master && m.instance != nil && !master.engine().CanReplicateFrom(m.engine()) {
			return map[string]string{replicaPriorityKey: "0"}
		}
	}
	return nil
}
