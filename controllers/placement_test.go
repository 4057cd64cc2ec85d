package controllers

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/internal/endpoint"
	"github.com/incusops/redis-sentinel-operator/internal/engine"
	"github.com/incusops/redis-sentinel-operator/internal/incus"
	"github.com/incusops/redis-sentinel-operator/internal/render"
	"github.com/incusops/redis-sentinel-operator/internal/topology"
)

// clusterMemberName is the cluster member of the hand-built clusters.
func clusterMemberName(i int) string { return fmt.Sprintf("cache-%02d", i) }

// clustered puts healthyCase's formation on a three-member cluster, member
// i on cache-0i, with the given statuses (Online when not given).
func clustered(o *observation, statuses map[int]string) {
	o.cluster = &clusterObs{}
	for i := 1; i <= 3; i++ {
		s := statuses[i]
		if s == "" {
			s = incus.MemberOnline
		}
		o.cluster.members = append(o.cluster.members, incus.ClusterMember{Name: clusterMemberName(i), Status: s})
	}
	for i, m := range o.members {
		if m.instance != nil {
			m.instance.Location = clusterMemberName(i + 1)
		}
	}
}

// lose makes member i's container unreachable on an offline host.
func lose(o *observation, i int) {
	m := o.members[i-1]
	m.instance.Status, m.instance.IPv4 = "Error", ""
	m.Member = topology.Member{Name: m.name, Home: m.Home}
}

// drop makes member i missing (no container at all).
func drop(o *observation, i int) {
	m := o.members[i-1]
	m.instance, m.Running, m.Redis, m.Sentinel = nil, false, endpoint.Endpoint{}, endpoint.Endpoint{}
}

func creates(p plan) []action {
	var out []action
	for _, a := range p.actions {
		if a.kind == actCreate {
			out = append(out, a)
		}
	}
	return out
}

func TestDecidePlacement(t *testing.T) {
	minute := metav1.Duration{Duration: time.Minute}
	cases := []struct {
		name  string
		setup func(f *redisv1alpha1.RedisSentinelFormation, o *observation)
		check func(t *testing.T, f *redisv1alpha1.RedisSentinelFormation, p plan)
	}{{
		name:  "spread over three online hosts: nothing to do",
		setup: func(_ *redisv1alpha1.RedisSentinelFormation, o *observation) { clustered(o, nil) },
		check: func(t *testing.T, _ *redisv1alpha1.RedisSentinelFormation, p plan) {
			if len(p.actions) != 0 || len(p.problems) != 0 || p.unplaced != "" {
				t.Fatalf("actions %v problems %v unplaced %q", kinds(p), p.problems, p.unplaced)
			}
		},
	}, {
		name: "missing member: created on the one free host, not autostarted",
		setup: func(_ *redisv1alpha1.RedisSentinelFormation, o *observation) {
			clustered(o, nil)
			drop(o, 2)
		},
		check: func(t *testing.T, _ *redisv1alpha1.RedisSentinelFormation, p plan) {
			c := creates(p)
			if len(c) != 1 || c[0].spec.Target != clusterMemberName(2) || c[0].spec.Config["boot.autostart"] != "false" {
				t.Fatalf("creates %+v", c)
			}
		},
	}, {
		name: "missing member, its host offline, spread Required: refused, nothing created",
		setup: func(_ *redisv1alpha1.RedisSentinelFormation, o *observation) {
			clustered(o, map[int]string{2: memberOffline})
			drop(o, 2)
		},
		check: func(t *testing.T, _ *redisv1alpha1.RedisSentinelFormation, p plan) {
			if len(creates(p)) != 0 || !hasProblem(p, ReasonCannotSpread) || !strings.Contains(p.unplaced, "cache-2 cannot be placed") {
				t.Fatalf("creates %v problems %v unplaced %q", creates(p), p.problems, p.unplaced)
			}
		},
	}, {
		name: "missing member, its host offline, spread Preferred: created beside another",
		setup: func(f *redisv1alpha1.RedisSentinelFormation, o *observation) {
			f.Spec.Incus.Placement.Spread = redisv1alpha1.SpreadPreferred
			clustered(o, map[int]string{2: memberOffline})
			drop(o, 2)
		},
		check: func(t *testing.T, _ *redisv1alpha1.RedisSentinelFormation, p plan) {
			c := creates(p)
			if len(c) != 1 || (c[0].spec.Target != clusterMemberName(1) && c[0].spec.Target != clusterMemberName(3)) || p.unplaced != "" {
				t.Fatalf("creates %+v unplaced %q", c, p.unplaced)
			}
		},
	}, {
		name: "new formation on two online hosts of three, Required: none of the three created",
		setup: func(f *redisv1alpha1.RedisSentinelFormation, o *observation) {
			clustered(o, map[int]string{3: memberOffline})
			for i := 1; i <= 3; i++ {
				drop(o, i)
			}
		},
		check: func(t *testing.T, _ *redisv1alpha1.RedisSentinelFormation, p plan) {
			if len(creates(p)) != 0 || !strings.Contains(p.unplaced, "2 of the cluster's 3 members are online") {
				t.Fatalf("creates %v unplaced %q", creates(p), p.unplaced)
			}
		},
	}, {
		name: "placement group: only its cluster members are used",
		setup: func(f *redisv1alpha1.RedisSentinelFormation, o *observation) {
			f.Spec.Incus.Placement.Group = "fast"
			clustered(o, nil)
			for i := range o.cluster.members[:2] {
				o.cluster.members[i].Groups = []string{"fast"}
			}
			drop(o, 3)
		},
		check: func(t *testing.T, _ *redisv1alpha1.RedisSentinelFormation, p plan) {
			// cache-03 is free but not in the group.
			if len(creates(p)) != 0 || !strings.Contains(p.unplaced, "in cluster group fast (cache-01, cache-02)") {
				t.Fatalf("creates %+v unplaced %q", creates(p), p.unplaced)
			}
		},
	}, {
		name: "explicit targets: used as they are",
		setup: func(f *redisv1alpha1.RedisSentinelFormation, o *observation) {
			f.Spec.Incus.Targets = []string{"a", "b", "c"}
			clustered(o, nil)
			drop(o, 3)
		},
		check: func(t *testing.T, _ *redisv1alpha1.RedisSentinelFormation, p plan) {
			if c := creates(p); len(c) != 1 || c[0].spec.Target != "c" {
				t.Fatalf("creates %+v", c)
			}
		},
	}, {
		name: "replica's host offline for 30 s of replaceAfter 1m: reported, looked at again at the deadline",
		setup: func(f *redisv1alpha1.RedisSentinelFormation, o *observation) {
			f.Spec.Incus.Placement.ReplaceAfter = &minute
			f.Status.Members[2].HostLostSince = timePtr(decideNow.Add(-30 * time.Second))
			clustered(o, map[int]string{3: memberOffline})
			lose(o, 3)
		},
		check: func(t *testing.T, _ *redisv1alpha1.RedisSentinelFormation, p plan) {
			if findAction(p, actAbandonInstance) != nil || !hasProblem(p, ReasonHostLost) || p.requeue != 30*time.Second {
				t.Fatalf("actions %v problems %v requeue %s", kinds(p), p.problems, p.requeue)
			}
		},
	}, {
		name: "replica's host offline, first seen now: since when recorded",
		setup: func(f *redisv1alpha1.RedisSentinelFormation, o *observation) {
			clustered(o, map[int]string{3: memberOffline})
			lose(o, 3)
		},
		check: func(t *testing.T, f *redisv1alpha1.RedisSentinelFormation, p plan) {
			st := f.Status.DeepCopy()
			for _, r := range p.record {
				r(st)
			}
			if since := st.Members[2].HostLostSince; since == nil || !since.Time.Equal(decideNow) {
				t.Fatalf("hostLostSince %v", since)
			}
			if !hasProblem(p, ReasonHostLost) || !strings.Contains(p.problems[0].message, "waits for its host") {
				t.Fatalf("problems %v", p.problems)
			}
		},
	}, {
		name: "replica's host offline past replaceAfter: re-created under a new name, the old one abandoned",
		setup: func(f *redisv1alpha1.RedisSentinelFormation, o *observation) {
			f.Spec.Incus.Placement.ReplaceAfter = &minute
			f.Status.Members[2].HostLostSince = timePtr(decideNow.Add(-2 * time.Minute))
			clustered(o, map[int]string{3: memberOffline})
			lose(o, 3)
		},
		check: func(t *testing.T, f *redisv1alpha1.RedisSentinelFormation, p plan) {
			a := findAction(p, actAbandonInstance)
			if a == nil || a.instance != testInstance(3) || !p.requeueNow {
				t.Fatalf("actions %v", kinds(p))
			}
			st := f.Status.DeepCopy()
			a.record(st)
			ms := st.Members[2]
			if ms.AbandonedInstance != testInstance(3) || ms.Instance == testInstance(3) || !strings.HasPrefix(ms.Instance, strings.TrimSuffix(testInstance(3), "")) || ms.HostLostSince != nil {
				t.Fatalf("member status after abandoning %+v", ms)
			}
		},
	}, {
		name: "master's host offline past replaceAfter, no other master yet: not re-created",
		setup: func(f *redisv1alpha1.RedisSentinelFormation, o *observation) {
			f.Spec.Incus.Placement.ReplaceAfter = &minute
			f.Status.Members[0].HostLostSince = timePtr(decideNow.Add(-2 * time.Minute))
			clustered(o, map[int]string{1: memberOffline})
			lose(o, 1)
		},
		check: func(t *testing.T, _ *redisv1alpha1.RedisSentinelFormation, p plan) {
			if findAction(p, actAbandonInstance) != nil || !strings.Contains(p.problems[0].message, "never as an empty master") {
				t.Fatalf("actions %v problems %v", kinds(p), p.problems)
			}
		},
	}, {
		name: "re-created member: created under its new name beside another member, even under Required",
		setup: func(f *redisv1alpha1.RedisSentinelFormation, o *observation) {
			f.Status.Members[2].AbandonedInstance, f.Status.Members[2].Instance = testInstance(3), "new-3"
			clustered(o, map[int]string{3: memberOffline})
			drop(o, 3)
			o.members[2].instanceName = "new-3"
		},
		check: func(t *testing.T, _ *redisv1alpha1.RedisSentinelFormation, p plan) {
			c := creates(p)
			if len(c) != 1 || c[0].spec.Name != "new-3" || (c[0].spec.Target != clusterMemberName(1) && c[0].spec.Target != clusterMemberName(2)) {
				t.Fatalf("creates %+v", c)
			}
		},
	}, {
		name: "abandoned instance: deleted once its host is back, not before",
		setup: func(f *redisv1alpha1.RedisSentinelFormation, o *observation) {
			clustered(o, nil)
			o.abandoned = []abandonedObs{{member: "cache-3", instance: incus.Instance{Name: "old-3", Status: "Stopped", Location: clusterMemberName(3)}}}
			f.Status.Members[2].AbandonedInstance = "old-3"
		},
		check: func(t *testing.T, f *redisv1alpha1.RedisSentinelFormation, p plan) {
			a := findAction(p, actDeleteAbandoned)
			if a == nil || a.instance != "old-3" {
				t.Fatalf("actions %v", kinds(p))
			}
			st := f.Status.DeepCopy()
			a.record(st)
			if st.Members[2].AbandonedInstance != "" {
				t.Fatalf("abandoned instance still recorded: %+v", st.Members[2])
			}
		},
	}, {
		name: "abandoned instance on a host still offline: left alone",
		setup: func(_ *redisv1alpha1.RedisSentinelFormation, o *observation) {
			clustered(o, map[int]string{3: memberOffline})
			o.abandoned = []abandonedObs{{member: "cache-3", instance: incus.Instance{Name: "old-3", Status: "Error", Location: clusterMemberName(3)}}}
		},
		check: func(t *testing.T, _ *redisv1alpha1.RedisSentinelFormation, p plan) {
			if findAction(p, actDeleteAbandoned) != nil {
				t.Fatalf("actions %v", kinds(p))
			}
		},
	}, {
		name: "two members share a host while another is free: the replica moves",
		setup: func(_ *redisv1alpha1.RedisSentinelFormation, o *observation) {
			clustered(o, nil)
			o.members[2].instance.Location = clusterMemberName(1) // beside the master
		},
		check: func(t *testing.T, _ *redisv1alpha1.RedisSentinelFormation, p plan) {
			if !slices.Equal(kinds(p), []actionKind{actReplace}) || p.actions[0].member != "cache-3" || !strings.Contains(p.actions[0].reason, "shares cluster member cache-01") {
				t.Fatalf("actions %+v", p.actions)
			}
		},
	}, {
		name: "an evacuated instance shares a host: Incus moves it back, the operator does not",
		setup: func(_ *redisv1alpha1.RedisSentinelFormation, o *observation) {
			clustered(o, nil)
			o.members[2].instance.Location = clusterMemberName(1)
			o.members[2].instance.Config[evacuationOrigin] = clusterMemberName(3)
		},
		check: func(t *testing.T, _ *redisv1alpha1.RedisSentinelFormation, p plan) {
			if len(p.actions) != 0 {
				t.Fatalf("actions %v", kinds(p))
			}
		},
	}, {
		name: "two members share a host, no other host online: left as they are",
		setup: func(_ *redisv1alpha1.RedisSentinelFormation, o *observation) {
			clustered(o, map[int]string{3: memberOffline})
			o.members[2].instance.Location = clusterMemberName(1)
		},
		check: func(t *testing.T, _ *redisv1alpha1.RedisSentinelFormation, p plan) {
			if len(p.actions) != 0 {
				t.Fatalf("actions %v", kinds(p))
			}
		},
	}, {
		name: "master's host evacuating: writes held for a planned failover",
		setup: func(_ *redisv1alpha1.RedisSentinelFormation, o *observation) {
			clustered(o, map[int]string{1: memberEvacuating})
		},
		check: func(t *testing.T, _ *redisv1alpha1.RedisSentinelFormation, p plan) {
			if a := findAction(p, actHoldWrites); a == nil || !strings.Contains(a.reason, "cache-01 is being evacuated") {
				t.Fatalf("actions %+v", p.actions)
			}
		},
	}, {
		name: "master's host evacuated, its sentinel already stopped: not healed, writes held",
		setup: func(_ *redisv1alpha1.RedisSentinelFormation, o *observation) {
			clustered(o, map[int]string{1: memberEvacuated})
			o.members[0].SentinelErr = fmt.Errorf("connection refused")
			o.members[0].Probe = &topology.Probe{Configured: true, RedisActive: false, SentinelActive: false}
		},
		check: func(t *testing.T, _ *redisv1alpha1.RedisSentinelFormation, p plan) {
			for _, a := range p.actions {
				if a.kind == actTopology && a.member == "cache-1" {
					t.Fatalf("healing a member Incus is stopping: %+v", a)
				}
			}
			if findAction(p, actHoldWrites) == nil {
				t.Fatalf("actions %v", kinds(p))
			}
		},
	}, {
		name: "stopped member on an evacuated host: Incus's to move, not started",
		setup: func(f *redisv1alpha1.RedisSentinelFormation, o *observation) {
			clustered(o, map[int]string{3: memberEvacuated})
			stop(o.members[2])
		},
		check: func(t *testing.T, _ *redisv1alpha1.RedisSentinelFormation, p plan) {
			if findAction(p, actStart) != nil {
				t.Fatalf("actions %v", kinds(p))
			}
		},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f, o := healthyCase(t)
			tc.setup(f, o)
			tc.check(t, f, decide(f, o, Options{}, decideNow))
		})
	}
}

func TestSpreadCondition(t *testing.T) {
	cases := []struct {
		name   string
		setup  func(o *observation, p *plan)
		status metav1.ConditionStatus
		reason string
		in     string
	}{
		{"standalone: no condition", func(o *observation, _ *plan) { o.cluster = nil }, "", "", ""},
		{"spread", func(*observation, *plan) {}, metav1.ConditionTrue, ReasonSpread, "cache-2 on cache-02"},
		{"sharing", func(o *observation, _ *plan) {
			o.cluster.members[2].Status = memberOffline
			o.members[2].instance.Location = clusterMemberName(1)
		}, metav1.ConditionFalse, ReasonMembersShareHost, "cache-1 and cache-3 share cache-01: 2 of the cluster's 3 members are online"},
		{"refused placement", func(_ *observation, p *plan) { p.unplaced = "member(s) cache-3 cannot be placed" }, metav1.ConditionFalse, ReasonCannotSpread, "cache-3 cannot be placed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f, o := healthyCase(t)
			clustered(o, nil)
			meta.SetStatusCondition(&f.Status.Conditions, metav1.Condition{Type: redisv1alpha1.ConditionSpread, Status: metav1.ConditionTrue, Reason: "Old"})
			var p plan
			tc.setup(o, &p)
			setSpreadCondition(f, o, p, decideNow)
			c := meta.FindStatusCondition(f.Status.Conditions, redisv1alpha1.ConditionSpread)
			if tc.status == "" {
				if c != nil {
					t.Fatalf("condition %+v on a standalone server", c)
				}
				return
			}
			if c == nil || c.Status != tc.status || c.Reason != tc.reason || !strings.Contains(c.Message, tc.in) {
				t.Fatalf("condition %+v, want %s %s containing %q", c, tc.status, tc.reason, tc.in)
			}
		})
	}
}

func TestPreferenceOrderSpreadsFormations(t *testing.T) {
	first := map[string]int{}
	for i := 0; i < 30; i++ {
		f := newFormation(fmt.Sprintf("f%d", i))
		order := preferenceOrder(f, []string{"a", "b", "c"})
		if len(order) != 3 || !slices.Equal(slices.Sorted(slices.Values(order)), []string{"a", "b", "c"}) {
			t.Fatalf("order %v is not a rotation of a, b, c", order)
		}
		first[order[0]]++
	}
	if len(first) != 3 {
		t.Fatalf("30 formations start on %v: not spread over the hosts", first)
	}
}

// TestClusterHostLoss drives a formation on a (fake) three-member Incus
// cluster with a macvlan-like network through the loss of its master's
// host: spread at first; the host offline, a new master, the member
// re-created elsewhere after replaceAfter and the formation Ready again,
// not spread; the host back, the abandoned instance deleted (and no
// other) and the members spread again.
func TestClusterHostLoss(t *testing.T) {
	e := standardEnv(t, func(f *redisv1alpha1.RedisSentinelFormation) {
		f.Spec.Incus.Placement.ReplaceAfter = &metav1.Duration{Duration: time.Minute}
	})
	e.incus.SetCluster(incus.ClusterMember{Name: clusterMemberName(1)}, incus.ClusterMember{Name: clusterMemberName(2)}, incus.ClusterMember{Name: clusterMemberName(3)})
	e.incus.SetNotBridged("rsfbr0")
	r := e.newReconciler()
	e.converge(r, testKey, 80)

	f := e.formation(testKey)
	locations := map[string]string{}
	for _, m := range f.Status.Members {
		if got := e.incus.Location(m.Instance); m.Location == "" || got != m.Location {
			t.Fatalf("member %s: status location %q, Incus %q", m.Name, m.Location, got)
		}
		if other, dup := locations[m.Location]; dup {
			t.Fatalf("members %s and %s share %s", other, m.Name, m.Location)
		}
		locations[m.Location] = m.Name
		if cfg := e.incus.InstanceConfig(m.Instance); cfg["boot.autostart"] != "false" {
			t.Fatalf("member %s's container starts with its host (boot.autostart %q)", m.Name, cfg["boot.autostart"])
		}
		sentinelDropIn, _ := render.GateSentinelDropIn(engine.MustOf(engine.Redis))
		for _, path := range []string{render.GateScript, render.GateDropIn(engine.MustOf(engine.Redis)), sentinelDropIn} {
			if _, ok := e.incus.File(m.Instance, path); !ok {
				t.Fatalf("member %s has no %s: no handover gate on a cluster", m.Name, path)
			}
		}
	}
	if c := meta.FindStatusCondition(f.Status.Conditions, redisv1alpha1.ConditionSpread); c == nil || c.Status != metav1.ConditionTrue {
		t.Fatalf("Spread condition %+v", c)
	}

	lostMember := f.Status.Master.Member
	lostInstance := findMember(f.Status.Members, lostMember).Instance
	lostHost := e.incus.Location(lostInstance)
	before := e.incus.Names()
	e.incus.SetMemberStatus(lostHost, "Offline")
	e.passesUntil(func() *FormationReconciler { return r }, testKey, 50, func() bool {
		return findMember(e.formation(testKey).Status.Members, lostMember).HostLostSince != nil
	}, nil)
	e.clock.Advance(time.Minute)

	e.passesUntil(func() *FormationReconciler { return r }, testKey, 200, func() bool {
		f := e.formation(testKey)
		return isReady(f) && findMember(f.Status.Members, lostMember).AbandonedInstance == lostInstance
	}, nil)
	f = e.formation(testKey)
	if f.Status.Master.Member == lostMember {
		t.Fatalf("master still %s on the lost host", lostMember)
	}
	replaced := findMember(f.Status.Members, lostMember)
	if replaced.Instance == lostInstance || replaced.Location == lostHost || replaced.Role != redisv1alpha1.RoleReplica {
		t.Fatalf("re-created member %+v", replaced)
	}
	if c := meta.FindStatusCondition(f.Status.Conditions, redisv1alpha1.ConditionSpread); c == nil || c.Reason != ReasonMembersShareHost {
		t.Fatalf("Spread condition %+v while a host is offline", c)
	}

	backAt := e.clock.Now()
	e.incus.SetMemberStatus(lostHost, incus.MemberOnline)
	e.passesUntil(func() *FormationReconciler { return r }, testKey, 200, func() bool {
		f := e.formation(testKey)
		return isReady(f) && meta.IsStatusConditionTrue(f.Status.Conditions, redisv1alpha1.ConditionSpread)
	}, nil)
	f = e.formation(testKey)
	if findMember(f.Status.Members, lostMember).AbandonedInstance != "" {
		t.Fatalf("abandoned instance still recorded: %+v", f.Status.Members)
	}
	// The abandoned container is gone (its name may serve a member again,
	// in a container created since) and the others were not touched but
	// for one moved to spread the members again.
	current := map[string]incus.Instance{}
	for _, inst := range e.instances(f) {
		current[inst.Name] = inst
	}
	if len(e.incus.Names()) != 3 {
		t.Fatalf("instances %v, want the members' three", e.incus.Names())
	}
	for _, inst := range current {
		if inst.Name == lostInstance && inst.CreatedAt.Before(backAt) {
			t.Fatalf("abandoned instance %s was kept", lostInstance)
		}
	}
	moved := 0
	for _, name := range before {
		if inst, ok := current[name]; name != lostInstance && (!ok || inst.CreatedAt.After(backAt)) {
			moved++
		}
	}
	if moved > 1 {
		t.Fatalf("%d of the members that stayed online were rebuilt, want at most the one that moved", moved)
	}
	seen := map[string]bool{}
	for _, m := range f.Status.Members {
		if seen[m.Location] {
			t.Fatalf("not spread once the host is back: %+v", f.Status.Members)
		}
		seen[m.Location] = true
	}
}
