package controllers

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/internal/acl"
	"github.com/incusops/redis-sentinel-operator/internal/endpoint"
	"github.com/incusops/redis-sentinel-operator/internal/fingerprint"
	"github.com/incusops/redis-sentinel-operator/internal/incus"
	"github.com/incusops/redis-sentinel-operator/internal/redisadmin"
	"github.com/incusops/redis-sentinel-operator/internal/topology"
)

// decideNow is the time of the hand-built observations.
var decideNow = testStart.Add(time.Hour)

func memberHost(i int) string { return fmt.Sprintf("10.0.0.%d", 10+i) }

// healthyCase is a formation of three members, member 1 the master, whose
// status matches a healthy, settled observation: decide has nothing to do.
func healthyCase(t *testing.T) (*redisv1alpha1.RedisSentinelFormation, *observation) {
	t.Helper()
	f := newFormation(testName)
	f.Finalizers = []string{finalizerName}
	settings, err := runtimeSettings(f)
	if err != nil {
		t.Fatal(err)
	}
	master := redisEndpoint(memberHost(1))
	creds := testCredentials()
	o := &observation{
		desired:          desiredOf(creds),
		internalComplete: true,
		internalSecret:   &corev1.Secret{},
		state:            credentialState{secret: &corev1.Secret{}, set: creds},
		creds:            creds,
	}
	f.Status.BackendRules = backendUser(f).Rules
	for i := 1; i <= int(f.Spec.Members); i++ {
		name, instance := memberName(f, i), testInstance(i)
		host := memberHost(i)
		m := &memberObs{index: i, name: name, instanceName: instance, instance: &incus.Instance{
			Name: instance, Status: "Running", IPv4: host,
			Config:  map[string]string{keyFormationUID: string(f.UID), keyMember: fmt.Sprint(i), keyTemplate: templateDigest(f, i)},
			Devices: map[string]map[string]string{"eth0": {"type": "nic", "network": "rsfbr0", "ipv4.address": host}},
		}}
		m.Name, m.Running = name, true
		m.Redis, m.Sentinel, m.Home = redisEndpoint(host), sentinelEndpoint(host), redisEndpoint(host)
		if i == 1 {
			m.Repl = redisadmin.Replication{Role: "master", Offset: 1000, ConnectedReplicas: 2}
		} else {
			m.Repl = redisadmin.Replication{Role: "slave", Master: master, LinkUp: true, Offset: 1000}
		}
		m.View = redisadmin.MasterState{Address: master, Flags: []string{"master"}, Quorum: 2, DownAfterMs: 5000, FailoverTimeoutMs: 30000,
			ParallelSyncs: 1, NumReplicas: 2, NumOtherSentinels: 2, ConfigEpoch: 1}
		o.members = append(o.members, m)
		f.Status.Members = append(f.Status.Members, redisv1alpha1.MemberStatus{Name: name, Instance: instance, Address: host, SettingsHash: fingerprint.Map(settings)})
	}
	f.Status.Master = &redisv1alpha1.MasterStatus{Member: memberName(f, 1), Address: master.Host, Port: 6379, ConfigEpoch: 1}
	conn := &corev1.Secret{Data: connectionData(f, o.creds, sentinelAddresses(f, o), nil)}
	conn.Name = connectionSecretName(f)
	conn.OwnerReferences = []metav1.OwnerReference{*metav1.NewControllerRef(f, redisv1alpha1.GroupVersion.WithKind("RedisSentinelFormation"))}
	o.connection = conn
	return f, o
}

func kinds(p plan) []actionKind {
	var out []actionKind
	for _, a := range p.actions {
		out = append(out, a.kind)
	}
	return out
}

func findAction(p plan, kind actionKind) *action {
	for i := range p.actions {
		if p.actions[i].kind == kind {
			return &p.actions[i]
		}
	}
	return nil
}

func hasProblem(p plan, reason string) bool {
	return slices.ContainsFunc(p.problems, func(pr problem) bool { return pr.reason == reason })
}

// outdate makes member i's container look built from an older spec.
func outdate(o *observation, i int) { o.members[i-1].instance.Config[keyTemplate] = "older" }

func TestDecide(t *testing.T) {
	at := func(d time.Duration) *metav1.Time { return timePtr(decideNow.Add(-d)) }
	cases := []struct {
		name  string
		setup func(f *redisv1alpha1.RedisSentinelFormation, o *observation)
		check func(t *testing.T, f *redisv1alpha1.RedisSentinelFormation, p plan)
	}{{
		name:  "healthy and settled: nothing to do",
		setup: func(*redisv1alpha1.RedisSentinelFormation, *observation) {},
		check: func(t *testing.T, _ *redisv1alpha1.RedisSentinelFormation, p plan) {
			if len(p.actions) != 0 || len(p.problems) != 0 || p.requeueNow || p.progressing != "" {
				t.Fatalf("actions %v problems %v requeueNow %v progressing %q", kinds(p), p.problems, p.requeueNow, p.progressing)
			}
		},
	}, {
		name: "missing finalizer: only AddFinalizer",
		setup: func(f *redisv1alpha1.RedisSentinelFormation, o *observation) {
			f.Finalizers = nil
			o.members[1].instance = nil
		},
		check: func(t *testing.T, _ *redisv1alpha1.RedisSentinelFormation, p plan) {
			if !slices.Equal(kinds(p), []actionKind{actAddFinalizer}) || !p.requeueNow {
				t.Fatalf("actions %v requeueNow %v", kinds(p), p.requeueNow)
			}
		},
	}, {
		name: "missing instance: created at its previous address",
		setup: func(_ *redisv1alpha1.RedisSentinelFormation, o *observation) {
			m := o.members[1]
			m.instance, m.Running, m.Redis, m.Sentinel = nil, false, endpoint.Endpoint{}, endpoint.Endpoint{}
		},
		check: func(t *testing.T, f *redisv1alpha1.RedisSentinelFormation, p plan) {
			var creates []action
			for _, a := range p.actions {
				if a.kind == actCreate {
					creates = append(creates, a)
				}
			}
			if len(creates) != 1 || creates[0].member != "cache-2" || creates[0].instance != testInstance(2) {
				t.Fatalf("creates %+v (actions %v)", creates, kinds(p))
			}
			spec := creates[0].spec
			if spec.Name != testInstance(2) || spec.Devices["eth0"]["ipv4.address"] != memberHost(2) || spec.Config[keyFormationUID] != string(f.UID) ||
				spec.Config[keyMember] != "2" || spec.Config[keyTemplate] != templateDigest(f, 2) || spec.Image != f.Spec.Incus.Image {
				t.Fatalf("create spec %+v", spec)
			}
		},
	}, {
		name: "stopped 10 s after it was started: not started again yet",
		setup: func(f *redisv1alpha1.RedisSentinelFormation, o *observation) {
			stop(o.members[2])
			f.Status.Members[2].StartedAt = at(10 * time.Second)
		},
		check: func(t *testing.T, _ *redisv1alpha1.RedisSentinelFormation, p plan) {
			if findAction(p, actStart) != nil {
				t.Fatalf("started again within the crash window: %v", kinds(p))
			}
			if !hasProblem(p, ReasonInstanceError) {
				t.Fatalf("no %s problem: %v", ReasonInstanceError, p.problems)
			}
			if p.requeue <= 0 || p.requeue > 50*time.Second {
				t.Fatalf("requeue %s, want (0, 50s]", p.requeue)
			}
		},
	}, {
		name: "stopped 2 min after it was started: started",
		setup: func(f *redisv1alpha1.RedisSentinelFormation, o *observation) {
			stop(o.members[2])
			f.Status.Members[2].StartedAt = at(2 * time.Minute)
		},
		check: func(t *testing.T, _ *redisv1alpha1.RedisSentinelFormation, p plan) {
			a := findAction(p, actStart)
			if a == nil || a.member != "cache-3" || a.instance != testInstance(3) {
				t.Fatalf("actions %v", kinds(p))
			}
			if hasProblem(p, ReasonInstanceError) {
				t.Fatalf("problems %v", p.problems)
			}
			// Its start time is recorded once the start succeeded.
			st := &redisv1alpha1.RedisSentinelFormationStatus{Members: []redisv1alpha1.MemberStatus{{Name: "cache-3"}}}
			a.record(st)
			if st.Members[0].StartedAt == nil || !st.Members[0].StartedAt.Time.Equal(decideNow) {
				t.Fatalf("startedAt %v", st.Members[0].StartedAt)
			}
		},
	}, {
		name: "outdated replica stopped 10 s after it was started, the rest healthy: rebuilt, not started, no crash reported",
		setup: func(f *redisv1alpha1.RedisSentinelFormation, o *observation) {
			outdate(o, 3)
			stop(o.members[2])
			f.Status.Members[2].StartedAt = at(10 * time.Second)
		},
		check: func(t *testing.T, _ *redisv1alpha1.RedisSentinelFormation, p plan) {
			if !slices.Equal(kinds(p), []actionKind{actReplace}) || p.actions[0].member != "cache-3" || !p.requeueNow {
				t.Fatalf("actions %v", p.actions)
			}
			if hasProblem(p, ReasonInstanceError) {
				t.Fatalf("problems %v", p.problems)
			}
		},
	}, {
		name: "outdated replica stopped while another is unhealthy: started, not rebuilt",
		setup: func(_ *redisv1alpha1.RedisSentinelFormation, o *observation) {
			outdate(o, 3)
			stop(o.members[2])
			o.members[1].RedisErr = errors.New("connection refused")
		},
		check: func(t *testing.T, _ *redisv1alpha1.RedisSentinelFormation, p plan) {
			if findAction(p, actReplace) != nil || findAction(p, actStart) == nil {
				t.Fatalf("actions %v", kinds(p))
			}
		},
	}, {
		name: "outdated master stopped: started, not rebuilt (Sentinel, not a rebuild, moves the role)",
		setup: func(_ *redisv1alpha1.RedisSentinelFormation, o *observation) {
			outdate(o, 1)
			stop(o.members[0])
		},
		check: func(t *testing.T, _ *redisv1alpha1.RedisSentinelFormation, p plan) {
			if findAction(p, actReplace) != nil || findAction(p, actStart) == nil {
				t.Fatalf("actions %v", kinds(p))
			}
		},
	}, {
		name:  "outdated replica while whole: one ReplaceMember only",
		setup: func(_ *redisv1alpha1.RedisSentinelFormation, o *observation) { outdate(o, 2); outdate(o, 3) },
		check: func(t *testing.T, _ *redisv1alpha1.RedisSentinelFormation, p plan) {
			if !slices.Equal(kinds(p), []actionKind{actReplace}) || p.actions[0].member != "cache-2" || p.actions[0].instance != testInstance(2) || !p.requeueNow {
				t.Fatalf("actions %v", p.actions)
			}
		},
	}, {
		name: "outdated replica while another member is unhealthy: nothing replaced",
		setup: func(_ *redisv1alpha1.RedisSentinelFormation, o *observation) {
			outdate(o, 2)
			o.members[2].RedisErr = errors.New("connection refused")
			o.members[2].Probe = &topology.Probe{Configured: true, RedisActive: true, SentinelActive: true}
		},
		check: func(t *testing.T, _ *redisv1alpha1.RedisSentinelFormation, p plan) {
			if a := findAction(p, actReplace); a != nil {
				t.Fatalf("replaced %s while cache-3 is down: %v", a.member, kinds(p))
			}
		},
	}, {
		name:  "only the master outdated: writes held for a planned failover",
		setup: func(_ *redisv1alpha1.RedisSentinelFormation, o *observation) { outdate(o, 1) },
		check: func(t *testing.T, _ *redisv1alpha1.RedisSentinelFormation, p plan) {
			if !slices.Equal(kinds(p), []actionKind{actHoldWrites}) || p.actions[0].target != redisEndpoint(memberHost(1)) {
				t.Fatalf("actions %+v", p.actions)
			}
			st := &redisv1alpha1.RedisSentinelFormationStatus{}
			p.actions[0].record(st)
			if pf := st.PlannedFailover; pf == nil || pf.From != "cache-1" || pf.Phase != redisv1alpha1.PlannedFailoverHoldingWrites || !pf.HoldStartedAt.Time.Equal(decideNow) {
				t.Fatalf("planned failover recorded %+v", st.PlannedFailover)
			}
		},
	}, {
		name: "holding writes, replicas caught up: SENTINEL FAILOVER",
		setup: func(f *redisv1alpha1.RedisSentinelFormation, o *observation) {
			outdate(o, 1)
			f.Status.PlannedFailover = &redisv1alpha1.PlannedFailoverStatus{From: "cache-1", Reason: "r", Phase: redisv1alpha1.PlannedFailoverHoldingWrites,
				HoldStartedAt: metav1.NewMicroTime(decideNow.Add(-100 * time.Millisecond))}
		},
		check: func(t *testing.T, _ *redisv1alpha1.RedisSentinelFormation, p plan) {
			// Not the departing master's own sentinel: it stops with the
			// member, maybe before it has spread the new master.
			if !slices.Equal(kinds(p), []actionKind{actSentinelFailover}) || p.actions[0].member != "cache-2" || p.actions[0].target != sentinelEndpoint(memberHost(2)) {
				t.Fatalf("actions %+v", p.actions)
			}
			st := &redisv1alpha1.RedisSentinelFormationStatus{PlannedFailover: &redisv1alpha1.PlannedFailoverStatus{Phase: redisv1alpha1.PlannedFailoverHoldingWrites}}
			p.actions[0].record(st)
			if st.PlannedFailover.Phase != redisv1alpha1.PlannedFailoverPromoting || st.PlannedFailover.RequestedAt == nil {
				t.Fatalf("recorded %+v", st.PlannedFailover)
			}
		},
	}, {
		name: "holding writes, only the departing master's sentinel answers: it is asked",
		setup: func(f *redisv1alpha1.RedisSentinelFormation, o *observation) {
			outdate(o, 1)
			o.members[1].SentinelErr = errors.New("connection refused")
			o.members[2].SentinelErr = errors.New("connection refused")
			f.Status.PlannedFailover = &redisv1alpha1.PlannedFailoverStatus{From: "cache-1", Reason: "r", Phase: redisv1alpha1.PlannedFailoverHoldingWrites,
				HoldStartedAt: metav1.NewMicroTime(decideNow.Add(-100 * time.Millisecond))}
		},
		check: func(t *testing.T, _ *redisv1alpha1.RedisSentinelFormation, p plan) {
			if a := findAction(p, actSentinelFailover); a == nil || a.member != "cache-1" {
				t.Fatalf("actions %+v", p.actions)
			}
		},
	}, {
		name: "holding writes, a replica behind past the catch-up bound: writes released",
		setup: func(f *redisv1alpha1.RedisSentinelFormation, o *observation) {
			outdate(o, 1)
			o.members[2].Repl.Offset = 900
			f.Status.PlannedFailover = &redisv1alpha1.PlannedFailoverStatus{From: "cache-1", Reason: "r", Phase: redisv1alpha1.PlannedFailoverHoldingWrites,
				HoldStartedAt: metav1.NewMicroTime(decideNow.Add(-catchUpBound - time.Millisecond))}
		},
		check: func(t *testing.T, _ *redisv1alpha1.RedisSentinelFormation, p plan) {
			if !slices.Equal(kinds(p), []actionKind{actReleaseWrites}) || !hasProblem(p, ReasonReplicaBehind) {
				t.Fatalf("actions %v problems %v", kinds(p), p.problems)
			}
			// Given up: Done, so that it is retried after the pause.
			st := &redisv1alpha1.RedisSentinelFormationStatus{PlannedFailover: &redisv1alpha1.PlannedFailoverStatus{Phase: redisv1alpha1.PlannedFailoverHoldingWrites}}
			p.actions[0].record(st)
			if pf := st.PlannedFailover; pf == nil || pf.Phase != redisv1alpha1.PlannedFailoverDone || pf.RequestedAt == nil || !pf.RequestedAt.Time.Equal(decideNow) {
				t.Fatalf("planned failover recorded %+v", st.PlannedFailover)
			}
		},
	}, {
		name: "holding writes, a replica behind within the bound: wait",
		setup: func(f *redisv1alpha1.RedisSentinelFormation, o *observation) {
			outdate(o, 1)
			o.members[2].Repl.Offset = 900
			f.Status.PlannedFailover = &redisv1alpha1.PlannedFailoverStatus{From: "cache-1", Reason: "r", Phase: redisv1alpha1.PlannedFailoverHoldingWrites,
				HoldStartedAt: metav1.NewMicroTime(decideNow.Add(-100 * time.Millisecond))}
		},
		check: func(t *testing.T, _ *redisv1alpha1.RedisSentinelFormation, p plan) {
			if len(p.actions) != 0 || p.requeue != holdPoll {
				t.Fatalf("actions %v requeue %s", kinds(p), p.requeue)
			}
		},
	}, {
		name: "promoting, a replica promoted: the old master is demoted",
		setup: func(f *redisv1alpha1.RedisSentinelFormation, o *observation) {
			outdate(o, 1)
			promoted := redisEndpoint(memberHost(2))
			o.members[1].Repl = redisadmin.Replication{Role: "master", Offset: 1000, ConnectedReplicas: 1}
			o.members[2].Repl.Master = promoted
			for _, m := range o.members {
				m.View.Address, m.View.ConfigEpoch = promoted, 2
			}
			f.Status.PlannedFailover = &redisv1alpha1.PlannedFailoverStatus{From: "cache-1", Reason: "r", Phase: redisv1alpha1.PlannedFailoverPromoting,
				HoldStartedAt: metav1.NewMicroTime(decideNow.Add(-time.Second)), RequestedAt: microTimePtr(decideNow.Add(-500 * time.Millisecond))}
		},
		check: func(t *testing.T, _ *redisv1alpha1.RedisSentinelFormation, p plan) {
			a := findAction(p, actDemoteOldMaster)
			if a == nil || a.member != "cache-1" || a.target != redisEndpoint(memberHost(2)) {
				t.Fatalf("actions %+v", p.actions)
			}
			st := &redisv1alpha1.RedisSentinelFormationStatus{PlannedFailover: &redisv1alpha1.PlannedFailoverStatus{Phase: redisv1alpha1.PlannedFailoverPromoting}}
			a.record(st)
			if st.PlannedFailover.Phase != redisv1alpha1.PlannedFailoverDone {
				t.Fatalf("recorded %+v", st.PlannedFailover)
			}
		},
	}, {
		name: "done, within the pause: nothing, a wake-up at its end",
		setup: func(f *redisv1alpha1.RedisSentinelFormation, o *observation) {
			outdate(o, 1)
			f.Status.PlannedFailover = &redisv1alpha1.PlannedFailoverStatus{From: "cache-1", Reason: "r", Phase: redisv1alpha1.PlannedFailoverDone,
				HoldStartedAt: metav1.NewMicroTime(decideNow.Add(-11 * time.Second)), RequestedAt: microTimePtr(decideNow.Add(-10 * time.Second))}
		},
		check: func(t *testing.T, f *redisv1alpha1.RedisSentinelFormation, p plan) {
			if len(p.actions) != 0 {
				t.Fatalf("actions %v", kinds(p))
			}
			if p.requeue != plannedFailoverPause-10*time.Second {
				t.Fatalf("requeue %s", p.requeue)
			}
			st := f.Status.DeepCopy()
			for _, rec := range p.record {
				if rec != nil {
					rec(st)
				}
			}
			if st.PlannedFailover == nil {
				t.Fatal("planned failover cleared within its pause")
			}
		},
	}, {
		name:  "scale-down, the master stays: the leaving members removed",
		setup: func(f *redisv1alpha1.RedisSentinelFormation, o *observation) { addLeaving(f, o, 0) },
		check: func(t *testing.T, _ *redisv1alpha1.RedisSentinelFormation, p plan) {
			var removed []string
			for _, a := range p.actions {
				if a.kind == actRemove {
					removed = append(removed, a.member)
				}
			}
			if !slices.Equal(removed, []string{"cache-4", "cache-5"}) || findAction(p, actHoldWrites) != nil {
				t.Fatalf("actions %+v", p.actions)
			}
		},
	}, {
		name:  "scale-down, the master on a leaving member: writes held on it, nothing removed",
		setup: func(f *redisv1alpha1.RedisSentinelFormation, o *observation) { addLeaving(f, o, 5) },
		check: func(t *testing.T, _ *redisv1alpha1.RedisSentinelFormation, p plan) {
			if findAction(p, actRemove) != nil {
				t.Fatalf("removed a member while the master leaves: %v", kinds(p))
			}
			a := findAction(p, actHoldWrites)
			if a == nil || a.member != "cache-5" || a.target != redisEndpoint(memberHost(5)) {
				t.Fatalf("actions %+v", p.actions)
			}
		},
	}, {
		name: "scale-down, promoting away from a leaving master: it is demoted",
		setup: func(f *redisv1alpha1.RedisSentinelFormation, o *observation) {
			addLeaving(f, o, 5)
			promoted := redisEndpoint(memberHost(1))
			o.members[0].Repl = redisadmin.Replication{Role: "master", Offset: 1000, ConnectedReplicas: 1}
			for _, m := range o.members {
				m.View.Address, m.View.ConfigEpoch = promoted, 3
				if m.index != 1 {
					m.Repl.Master = promoted
				}
			}
			f.Status.PlannedFailover = &redisv1alpha1.PlannedFailoverStatus{From: "cache-5", Reason: "r", Phase: redisv1alpha1.PlannedFailoverPromoting,
				HoldStartedAt: metav1.NewMicroTime(decideNow.Add(-time.Second)), RequestedAt: microTimePtr(decideNow.Add(-500 * time.Millisecond))}
		},
		check: func(t *testing.T, _ *redisv1alpha1.RedisSentinelFormation, p plan) {
			if a := findAction(p, actDemoteOldMaster); a == nil || a.member != "cache-5" || a.target != redisEndpoint(memberHost(1)) {
				t.Fatalf("actions %+v", p.actions)
			}
		},
	}, {
		name: "backend password changed, every member answers: ApplyCredentials (old and new accepted) and the state write only",
		setup: func(_ *redisv1alpha1.RedisSentinelFormation, o *observation) {
			o.desired[acl.BackendPassword] = "new-password"
		},
		check: func(t *testing.T, _ *redisv1alpha1.RedisSentinelFormation, p plan) {
			if !slices.Equal(kinds(p), []actionKind{actApplyCredentials, actWriteSecret}) || !p.requeueNow {
				t.Fatalf("actions %v requeueNow %v", kinds(p), p.requeueNow)
			}
			want := acl.Passwords{Current: "new-password", Previous: testPassword}
			if got := p.actions[0].creds[acl.BackendPassword]; got != want {
				t.Fatalf("applied backend passwords %+v, want %+v", got, want)
			}
			if got := p.actions[0].creds[acl.Admin]; got != testCredentials()[acl.Admin] {
				t.Fatalf("an unchanged credential was rotated: admin %+v", got)
			}
			data := p.actions[1].data
			if string(data["backend"]) != "new-password" || string(data["backend.previous"]) != testPassword || data["admin.previous"] != nil {
				t.Fatalf("state written: %v", sortedKeys(data))
			}
			st := &redisv1alpha1.RedisSentinelFormationStatus{}
			p.actions[1].record(st)
			if pr := st.PasswordRotation; pr == nil || !pr.RetireAt.Time.Equal(decideNow.Add(10*time.Minute)) || !slices.Equal(pr.Credentials, []string{"backend"}) {
				t.Fatalf("rotation recorded %+v", st.PasswordRotation)
			}
		},
	}, {
		name: "internal credentials Secret deleted: new passwords are generated and written first, nothing else",
		setup: func(_ *redisv1alpha1.RedisSentinelFormation, o *observation) {
			o.internalSecret, o.internalComplete = nil, false
			o.desired[acl.Admin] = "generated-admin"
		},
		check: func(t *testing.T, f *redisv1alpha1.RedisSentinelFormation, p plan) {
			if !slices.Equal(kinds(p), []actionKind{actWriteSecret}) || p.actions[0].secretName != internalSecretName(f) || !p.requeueNow {
				t.Fatalf("actions %v", kinds(p))
			}
			if got := string(p.actions[0].data["admin"]); got != "generated-admin" {
				t.Fatalf("internal Secret written with admin %q", got)
			}
		},
	}, {
		name: "grace over: ApplyCredentials with the current passwords only, then the state without predecessors",
		setup: func(f *redisv1alpha1.RedisSentinelFormation, o *observation) {
			o.state.set[acl.Peer] = acl.Passwords{Current: o.state.set[acl.Peer].Current, Previous: "old-peer"}
			f.Status.PasswordRotation = &redisv1alpha1.PasswordRotationStatus{RetireAt: metav1.NewTime(decideNow.Add(-time.Second)), Credentials: []string{"peer"}}
		},
		check: func(t *testing.T, _ *redisv1alpha1.RedisSentinelFormation, p plan) {
			if !slices.Equal(kinds(p), []actionKind{actApplyCredentials, actWriteSecret}) {
				t.Fatalf("actions %v", kinds(p))
			}
			if got := p.actions[0].creds[acl.Peer]; got.Previous != "" {
				t.Fatalf("retire still accepts the previous peer password: %+v", got)
			}
			if p.actions[1].data["peer.previous"] != nil {
				t.Fatal("the state keeps the retired password")
			}
		},
	}, {
		name: "backend rules changed: the users are applied after the healing, and the hash recorded on success",
		setup: func(f *redisv1alpha1.RedisSentinelFormation, _ *observation) {
			f.Spec.Auth.BackendUser.Rules = []string{"-@all", "+get", "~*"}
		},
		check: func(t *testing.T, f *redisv1alpha1.RedisSentinelFormation, p plan) {
			a := findAction(p, actApplyBackendRules)
			if a == nil || p.actions[len(p.actions)-1].kind != actApplyBackendRules {
				t.Fatalf("actions %v", kinds(p))
			}
			st := &redisv1alpha1.RedisSentinelFormationStatus{}
			a.record(st)
			if !slices.Equal(st.BackendRules, f.Spec.Auth.BackendUser.Rules) || !slices.Equal(a.backend.Rules, f.Spec.Auth.BackendUser.Rules) {
				t.Fatalf("applied %v, recorded %v", a.backend.Rules, st.BackendRules)
			}
		},
	}, {
		name: "a sentinel monitors an address that is no member's: Degraded naming it, re-pointed at once, no REPLICAOF to it",
		setup: func(_ *redisv1alpha1.RedisSentinelFormation, o *observation) {
			o.members[1].View.Address, o.members[1].View.ConfigEpoch = endpoint.Endpoint{Host: "10.9.9.9", Port: 6379}, 7
		},
		check: func(t *testing.T, _ *redisv1alpha1.RedisSentinelFormation, p plan) {
			if len(p.problems) != 1 || p.problems[0].reason != ReasonUntrustedMaster || !strings.Contains(p.problems[0].message, "10.9.9.9:6379") {
				t.Fatalf("problems %+v", p.problems)
			}
			for _, a := range p.actions {
				if a.target.Host == "10.9.9.9" {
					t.Fatalf("an action targets the untrusted address: %+v", a)
				}
			}
			if a := findAction(p, actTopology); a == nil || a.topology.Kind != topology.Remonitor || a.member != "cache-2" || !strings.Contains(a.reason, "10.9.9.9:6379") {
				t.Fatalf("actions %+v", p.actions)
			}
			if n := untrustedNotes(p.topology); len(n) != 1 || n[0].eventType != "Warning" || n[0].reason != ReasonUntrustedMaster || !strings.Contains(n[0].message, "10.9.9.9:6379") {
				t.Fatalf("events %+v", n)
			}
		},
	}, {
		name: "password changed, a member down: no password action",
		setup: func(_ *redisv1alpha1.RedisSentinelFormation, o *observation) {
			o.desired[acl.BackendPassword] = "new-password"
			o.members[2].RedisErr = errors.New("connection refused")
			o.members[2].Probe = &topology.Probe{Configured: true, RedisActive: true, SentinelActive: true}
		},
		check: func(t *testing.T, _ *redisv1alpha1.RedisSentinelFormation, p plan) {
			for _, k := range []actionKind{actApplyCredentials, actWriteSecret} {
				if findAction(p, k) != nil {
					t.Fatalf("%s while cache-3 does not answer: %v", k, kinds(p))
				}
			}
			if !strings.Contains(p.progressing, "cache-3") {
				t.Fatalf("progressing %q", p.progressing)
			}
		},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f, o := healthyCase(t)
			tc.setup(f, o)
			p := decide(f, o, Options{PasswordGrace: 10 * time.Minute, ResyncPeriod: 15 * time.Second}, decideNow)
			tc.check(t, f, p)
		})
	}
}

// addLeaving adds members 4 and 5, beyond spec.members (a scale-down from
// 5), running and linked; masterIndex (0: none of them) makes one of them
// the master every sentinel names, the others its replicas.
func addLeaving(f *redisv1alpha1.RedisSentinelFormation, o *observation, masterIndex int) {
	master := redisEndpoint(memberHost(1))
	if masterIndex != 0 {
		master = redisEndpoint(memberHost(masterIndex))
	}
	for i := 4; i <= 5; i++ {
		name, host := memberName(f, i), memberHost(i)
		m := &memberObs{index: i, name: name, instance: &incus.Instance{
			Name: name, Status: "Running", IPv4: host,
			Config:  map[string]string{keyFormationUID: string(f.UID), keyMember: fmt.Sprint(i), keyTemplate: templateDigest(f, i)},
			Devices: map[string]map[string]string{"eth0": {"type": "nic", "network": "rsfbr0", "ipv4.address": host}},
		}}
		m.Name, m.Running, m.Redis, m.Home = name, true, redisEndpoint(host), redisEndpoint(host)
		m.Repl = redisadmin.Replication{Role: "slave", Master: master, LinkUp: true, Offset: 1000}
		if i == masterIndex {
			m.Repl = redisadmin.Replication{Role: "master", Offset: 1000, ConnectedReplicas: 4}
		}
		o.leaving = append(o.leaving, m)
	}
	if masterIndex == 0 {
		return
	}
	for _, m := range o.members {
		m.Repl = redisadmin.Replication{Role: "slave", Master: master, LinkUp: true, Offset: 1000}
		m.View.Address = master
	}
}

// stop makes a member's container stopped (no address, nothing answers).
func stop(m *memberObs) {
	m.instance.Status, m.instance.IPv4 = "Stopped", ""
	m.Member = topology.Member{Name: m.name}
}
