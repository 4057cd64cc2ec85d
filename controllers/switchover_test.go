package controllers

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/internal/endpoint"
	"github.com/incusops/redis-sentinel-operator/internal/redisadmin"
)

// switchoverCase is healthyCase with the replicas' replica-priority as
// INFO reports it (100) and the sentinels' view of it.
func switchoverCase(t *testing.T) (*redisv1alpha1.RedisSentinelFormation, *observation) {
	f, o := healthyCase(t)
	for _, m := range o.members[1:] {
		m.Repl.Priority = 100
	}
	seeing(o, map[int]int{2: 100, 3: 100})
	return f, o
}

// seeing makes every sentinel report these priorities (by member index).
func seeing(o *observation, priorities map[int]int) {
	for _, s := range o.members {
		s.replicaPriorities = map[endpoint.Endpoint]int{}
		for i, prio := range priorities {
			s.replicaPriorities[o.members[i-1].Redis] = prio
		}
	}
}

func inProgress(f *redisv1alpha1.RedisSentinelFormation, request, to string, lowered ...string) {
	f.Status.Switchover = &redisv1alpha1.SwitchoverStatus{Request: request, Phase: redisv1alpha1.SwitchoverInProgress, Reason: ReasonSwitchoverAccepted,
		From: memberName(f, 1), To: to, StartedAt: timePtr(decideNow.Add(-5 * time.Second))}
	for _, name := range lowered {
		f.Status.Switchover.LoweredPriorities = append(f.Status.Switchover.LoweredPriorities, redisv1alpha1.ReplicaPriority{Member: name, Priority: 100})
	}
}

// moveMaster makes every sentinel name member i the master, with a newer
// epoch, and the members follow it.
func moveMaster(o *observation, i int) {
	master := o.members[i-1].Redis
	for j, m := range o.members {
		m.View.Address, m.View.ConfigEpoch = master, 2
		if j == i-1 {
			m.Repl = redisadmin.Replication{Role: "master", Offset: 2000, ConnectedReplicas: 2}
		} else {
			m.Repl = redisadmin.Replication{Role: "slave", Master: master, LinkUp: true, Offset: 2000, Priority: m.Repl.Priority}
		}
	}
}

// applyRecords applies what a pass would record with every action
// succeeding.
func applyRecords(f *redisv1alpha1.RedisSentinelFormation, p plan) {
	for _, rec := range p.record {
		if rec != nil {
			rec(&f.Status)
		}
	}
	for _, a := range p.actions {
		if a.record != nil {
			a.record(&f.Status)
		}
	}
}

func annotate(f *redisv1alpha1.RedisSentinelFormation, key, value string) {
	if f.Annotations == nil {
		f.Annotations = map[string]string{}
	}
	f.Annotations[key] = value
}

func priorityActions(p plan) map[string]string {
	out := map[string]string{}
	for _, a := range p.actions {
		if a.kind == actSetPriority {
			out[a.member] = a.settings[replicaPriorityKey]
		}
	}
	return out
}

func TestDecideSwitchover(t *testing.T) {
	request := func(value string) func(*redisv1alpha1.RedisSentinelFormation, *observation) {
		return func(f *redisv1alpha1.RedisSentinelFormation, _ *observation) {
			annotate(f, redisv1alpha1.AnnotationSwitchover, value)
		}
	}
	refused := func(reason string) func(*testing.T, *redisv1alpha1.RedisSentinelFormation, plan) {
		return func(t *testing.T, f *redisv1alpha1.RedisSentinelFormation, p plan) {
			t.Helper()
			sw := f.Status.Switchover
			if sw == nil || sw.Phase != redisv1alpha1.SwitchoverRefused || sw.Reason != reason || sw.FinishedAt == nil {
				t.Fatalf("switchover %+v, want Refused %s", sw, reason)
			}
			for _, k := range []actionKind{actSetPriority, actHoldWrites, actSentinelFailover} {
				if findAction(p, k) != nil {
					t.Fatalf("a refused request decided %v", kinds(p))
				}
			}
			if sw.Request != f.Annotations[redisv1alpha1.AnnotationSwitchover] {
				t.Fatalf("request %q not recorded as handled", sw.Request)
			}
		}
	}
	cases := []struct {
		name  string
		setup func(f *redisv1alpha1.RedisSentinelFormation, o *observation)
		check func(t *testing.T, f *redisv1alpha1.RedisSentinelFormation, p plan)
	}{{
		name:  "a named replica: accepted, the other replica never promoted; writes not held yet",
		setup: request(testName + "-2"),
		check: func(t *testing.T, f *redisv1alpha1.RedisSentinelFormation, p plan) {
			sw := f.Status.Switchover
			if sw == nil || sw.Phase != redisv1alpha1.SwitchoverInProgress || sw.From != testName+"-1" || sw.To != testName+"-2" || sw.Request != testName+"-2" {
				t.Fatalf("switchover %+v", sw)
			}
			if got := priorityActions(p); len(got) != 1 || got[testName+"-3"] != "0" {
				t.Fatalf("priority changes %v, want %s-3 to 0", got, testName)
			}
			if !slices.Equal(sw.LoweredPriorities, []redisv1alpha1.ReplicaPriority{{Member: testName + "-3", Priority: 100}}) {
				t.Fatalf("lowered priorities recorded %v", sw.LoweredPriorities)
			}
			if findAction(p, actHoldWrites) != nil || f.Status.PlannedFailover != nil {
				t.Fatal("writes held before the sentinels saw the priorities")
			}
		},
	}, {
		name:  "any: accepted, no priority changed",
		setup: request("any"),
		check: func(t *testing.T, f *redisv1alpha1.RedisSentinelFormation, p plan) {
			if sw := f.Status.Switchover; sw == nil || sw.Phase != redisv1alpha1.SwitchoverInProgress || sw.To != "" {
				t.Fatalf("switchover %+v", sw)
			}
			if len(p.actions) != 0 {
				t.Fatalf("actions %v", kinds(p))
			}
		},
	}, {
		name:  "unknown member",
		setup: request("nope-7"),
		check: refused(ReasonUnknownMember),
	}, {
		name:  "the master itself",
		setup: request(testName + "-1"),
		check: refused(ReasonTargetIsMaster),
	}, {
		name: "target's container stopped",
		setup: func(f *redisv1alpha1.RedisSentinelFormation, o *observation) {
			request(testName+"-2")(f, o)
			o.members[1].instance.Status, o.members[1].Running = "Stopped", false
		},
		check: refused(ReasonTargetNotInSync),
	}, {
		name: "target's link down",
		setup: func(f *redisv1alpha1.RedisSentinelFormation, o *observation) {
			request(testName+"-2")(f, o)
			o.members[1].Repl.LinkUp = false
		},
		check: refused(ReasonTargetNotInSync),
	}, {
		name: "target far behind",
		setup: func(f *redisv1alpha1.RedisSentinelFormation, o *observation) {
			request(testName+"-2")(f, o)
			o.members[0].Repl.Offset += 2 * inSyncLag
		},
		check: refused(ReasonTargetNotInSync),
	}, {
		name: "any with no replica in sync",
		setup: func(f *redisv1alpha1.RedisSentinelFormation, o *observation) {
			request("any")(f, o)
			o.members[1].Repl.LinkUp, o.members[2].Repl.LinkUp = false, false
		},
		check: refused(ReasonTargetNotInSync),
	}, {
		name: "target with replica-priority 0",
		setup: func(f *redisv1alpha1.RedisSentinelFormation, o *observation) {
			request(testName+"-2")(f, o)
			o.members[1].Repl.Priority = 0
		},
		check: refused(ReasonTargetNotPromotable),
	}, {
		name: "another member stopped: not Ready",
		setup: func(f *redisv1alpha1.RedisSentinelFormation, o *observation) {
			request(testName+"-2")(f, o)
			o.members[2].instance.Status, o.members[2].Running = "Stopped", false
			f.Status.Members[2].StartedAt = timePtr(decideNow.Add(-time.Second)) // crashing: not started again
		},
		check: refused(ReasonNotReady),
	}, {
		name: "a planned failover holds writes",
		setup: func(f *redisv1alpha1.RedisSentinelFormation, o *observation) {
			request("any")(f, o)
			f.Status.PlannedFailover = &redisv1alpha1.PlannedFailoverStatus{From: testName + "-1", Phase: redisv1alpha1.PlannedFailoverHoldingWrites, HoldStartedAt: microTime(decideNow)}
		},
		check: func(t *testing.T, f *redisv1alpha1.RedisSentinelFormation, p plan) {
			if sw := f.Status.Switchover; sw == nil || sw.Reason != ReasonFailingOver || sw.Phase != redisv1alpha1.SwitchoverRefused {
				t.Fatalf("switchover %+v", sw)
			}
			if findAction(p, actHoldWrites) != nil || findAction(p, actSetPriority) != nil {
				t.Fatalf("actions %v", kinds(p))
			}
		},
	}, {
		name: "the master's outage is being handled",
		setup: func(f *redisv1alpha1.RedisSentinelFormation, o *observation) {
			request("any")(f, o)
			f.Status.MasterOutage = &redisv1alpha1.MasterOutageStatus{Member: testName + "-1", LostAt: microTime(decideNow), DetectedAt: microTime(decideNow), DetectedBy: redisv1alpha1.DetectedByIncus}
		},
		check: refused(ReasonFailingOver),
	}, {
		name: "paused",
		setup: func(f *redisv1alpha1.RedisSentinelFormation, o *observation) {
			request("any")(f, o)
			annotate(f, redisv1alpha1.AnnotationPause, "")
		},
		check: refused(ReasonPaused),
	}, {
		name: "a request already handled is not repeated",
		setup: func(f *redisv1alpha1.RedisSentinelFormation, o *observation) {
			request("any")(f, o)
			f.Status.Switchover = &redisv1alpha1.SwitchoverStatus{Request: "any", Phase: redisv1alpha1.SwitchoverSucceeded, Reason: ReasonSwitchoverSucceeded}
		},
		check: func(t *testing.T, f *redisv1alpha1.RedisSentinelFormation, p plan) {
			if sw := f.Status.Switchover; sw.Phase != redisv1alpha1.SwitchoverSucceeded || len(p.actions) != 0 || p.progressing != "" {
				t.Fatalf("switchover %+v, actions %v", sw, kinds(p))
			}
		},
	}, {
		name: "annotation removed: the request is forgotten, the outcome kept",
		setup: func(f *redisv1alpha1.RedisSentinelFormation, o *observation) {
			f.Status.Switchover = &redisv1alpha1.SwitchoverStatus{Request: "any", Phase: redisv1alpha1.SwitchoverRefused, Reason: ReasonNotReady}
		},
		check: func(t *testing.T, f *redisv1alpha1.RedisSentinelFormation, p plan) {
			if sw := f.Status.Switchover; sw.Request != "" || sw.Phase != redisv1alpha1.SwitchoverRefused || sw.Reason != ReasonNotReady {
				t.Fatalf("switchover %+v", sw)
			}
		},
	}, {
		name: "in progress, a sentinel still reports the old priority: writes not held",
		setup: func(f *redisv1alpha1.RedisSentinelFormation, o *observation) {
			inProgress(f, testName+"-2", testName+"-2", testName+"-3")
			o.members[2].Repl.Priority = 0
			seeing(o, map[int]int{2: 100, 3: 0})
			o.members[1].replicaPriorities[o.members[2].Redis] = 100
		},
		check: func(t *testing.T, f *redisv1alpha1.RedisSentinelFormation, p plan) {
			if len(p.actions) != 0 || !strings.Contains(p.progressing, "waiting for the sentinel of "+testName+"-2") || p.requeue != prioritiesPoll {
				t.Fatalf("actions %v progressing %q requeue %s", kinds(p), p.progressing, p.requeue)
			}
		},
	}, {
		name: "in progress, every sentinel sees the priorities: writes are held",
		setup: func(f *redisv1alpha1.RedisSentinelFormation, o *observation) {
			inProgress(f, testName+"-2", testName+"-2", testName+"-3")
			o.members[2].Repl.Priority = 0
			seeing(o, map[int]int{2: 100, 3: 0})
		},
		check: func(t *testing.T, f *redisv1alpha1.RedisSentinelFormation, p plan) {
			hold := findAction(p, actHoldWrites)
			if hold == nil || hold.member != testName+"-1" || !strings.Contains(hold.reason, "switchover") {
				t.Fatalf("actions %v, want HoldWrites on the master", kinds(p))
			}
			if pf := f.Status.PlannedFailover; pf == nil || pf.Phase != redisv1alpha1.PlannedFailoverHoldingWrites {
				t.Fatalf("planned failover %+v", pf)
			}
		},
	}, {
		name: "in progress, a priority change was lost (operator died): lowered again",
		setup: func(f *redisv1alpha1.RedisSentinelFormation, o *observation) {
			inProgress(f, testName+"-2", testName+"-2")
		},
		check: func(t *testing.T, f *redisv1alpha1.RedisSentinelFormation, p plan) {
			if got := priorityActions(p); got[testName+"-3"] != "0" || findAction(p, actHoldWrites) != nil {
				t.Fatalf("actions %v", kinds(p))
			}
		},
	}, {
		name: "in progress, the target fell out of sync before the hold: failed, nothing held",
		setup: func(f *redisv1alpha1.RedisSentinelFormation, o *observation) {
			inProgress(f, testName+"-2", testName+"-2", testName+"-3")
			o.members[1].Repl.LinkUp = false
		},
		check: func(t *testing.T, f *redisv1alpha1.RedisSentinelFormation, p plan) {
			if sw := f.Status.Switchover; sw.Phase != redisv1alpha1.SwitchoverFailed || sw.Reason != ReasonTargetNotInSync {
				t.Fatalf("switchover %+v", sw)
			}
			if findAction(p, actHoldWrites) != nil {
				t.Fatal("writes held")
			}
		},
	}, {
		name: "in progress too long before the hold: failed",
		setup: func(f *redisv1alpha1.RedisSentinelFormation, o *observation) {
			inProgress(f, testName+"-2", testName+"-2", testName+"-3")
			f.Status.Switchover.StartedAt = timePtr(decideNow.Add(-switchoverTimeout - time.Second))
			seeing(o, map[int]int{2: 100, 3: 100})
		},
		check: func(t *testing.T, f *redisv1alpha1.RedisSentinelFormation, p plan) {
			if sw := f.Status.Switchover; sw.Phase != redisv1alpha1.SwitchoverFailed || sw.Reason != ReasonPrioritiesNotSeen {
				t.Fatalf("switchover %+v", sw)
			}
		},
	}, {
		name: "in progress, the master moved to the target: succeeded",
		setup: func(f *redisv1alpha1.RedisSentinelFormation, o *observation) {
			inProgress(f, testName+"-2", testName+"-2", testName+"-3")
			moveMaster(o, 2)
		},
		check: func(t *testing.T, f *redisv1alpha1.RedisSentinelFormation, p plan) {
			if sw := f.Status.Switchover; sw.Phase != redisv1alpha1.SwitchoverSucceeded || sw.To != testName+"-2" || sw.FinishedAt == nil {
				t.Fatalf("switchover %+v", sw)
			}
			if !p.requeueNow {
				t.Fatal("the priorities are not given back at once")
			}
		},
	}, {
		name: "in progress for any, the master moved: succeeded, the promoted member recorded",
		setup: func(f *redisv1alpha1.RedisSentinelFormation, o *observation) {
			inProgress(f, "any", "")
			moveMaster(o, 3)
		},
		check: func(t *testing.T, f *redisv1alpha1.RedisSentinelFormation, p plan) {
			if sw := f.Status.Switchover; sw.Phase != redisv1alpha1.SwitchoverSucceeded || sw.To != testName+"-3" {
				t.Fatalf("switchover %+v", sw)
			}
		},
	}, {
		name: "in progress, another member promoted: failed",
		setup: func(f *redisv1alpha1.RedisSentinelFormation, o *observation) {
			inProgress(f, testName+"-2", testName+"-2", testName+"-3")
			moveMaster(o, 3)
		},
		check: func(t *testing.T, f *redisv1alpha1.RedisSentinelFormation, p plan) {
			if sw := f.Status.Switchover; sw.Phase != redisv1alpha1.SwitchoverFailed || sw.Reason != ReasonOtherPromoted {
				t.Fatalf("switchover %+v", sw)
			}
		},
	}, {
		// Seen on the real stack: the promoted replica answers as master
		// (and the old one was demoted) before the sentinels name it.
		name: "our planned failover done, the sentinels still name the old master: waiting, not failed",
		setup: func(f *redisv1alpha1.RedisSentinelFormation, o *observation) {
			inProgress(f, testName+"-2", testName+"-2", testName+"-3")
			f.Status.PlannedFailover = &redisv1alpha1.PlannedFailoverStatus{From: testName + "-1", Phase: redisv1alpha1.PlannedFailoverDone,
				HoldStartedAt: microTime(decideNow.Add(-time.Second)), RequestedAt: microTimePtr(decideNow.Add(-time.Second))}
			o.members[0].Repl = redisadmin.Replication{Role: "slave", Master: o.members[1].Redis, LinkUp: true, Offset: 1000, Priority: 100}
			o.members[1].Repl = redisadmin.Replication{Role: "master", Offset: 1000}
		},
		check: func(t *testing.T, f *redisv1alpha1.RedisSentinelFormation, p plan) {
			if sw := f.Status.Switchover; sw.Phase != redisv1alpha1.SwitchoverInProgress {
				t.Fatalf("switchover %+v", sw)
			}
			if findAction(p, actHoldWrites) != nil || findAction(p, actSentinelFailover) != nil || p.requeue != promotionPoll {
				t.Fatalf("actions %v, requeue %s", kinds(p), p.requeue)
			}
		},
	}, {
		name: "our planned failover done long ago and the master never moved: failed, not asked again",
		setup: func(f *redisv1alpha1.RedisSentinelFormation, o *observation) {
			inProgress(f, "any", "")
			f.Status.Switchover.StartedAt = timePtr(decideNow.Add(-switchoverTimeout - 2*time.Second))
			f.Status.PlannedFailover = &redisv1alpha1.PlannedFailoverStatus{From: testName + "-1", Phase: redisv1alpha1.PlannedFailoverDone,
				HoldStartedAt: microTime(decideNow.Add(-switchoverTimeout)), RequestedAt: microTimePtr(decideNow.Add(-switchoverTimeout))}
		},
		check: func(t *testing.T, f *redisv1alpha1.RedisSentinelFormation, p plan) {
			if sw := f.Status.Switchover; sw.Phase != redisv1alpha1.SwitchoverFailed || sw.Reason != ReasonPlannedFailoverGivenUp {
				t.Fatalf("switchover %+v", sw)
			}
			if findAction(p, actHoldWrites) != nil {
				t.Fatalf("asked again: %v", kinds(p))
			}
		},
	}, {
		name: "ended with lowered priorities: given back",
		setup: func(f *redisv1alpha1.RedisSentinelFormation, o *observation) {
			inProgress(f, testName+"-2", testName+"-2", testName+"-3")
			f.Status.Switchover.Phase = redisv1alpha1.SwitchoverFailed
			o.members[2].Repl.Priority = 0
		},
		check: func(t *testing.T, f *redisv1alpha1.RedisSentinelFormation, p plan) {
			if got := priorityActions(p); len(got) != 1 || got[testName+"-3"] != "100" {
				t.Fatalf("priority changes %v, want %s-3 back to 100", got, testName)
			}
			if sw := f.Status.Switchover; len(sw.LoweredPriorities) != 0 {
				t.Fatalf("still recorded as lowered: %v", sw.LoweredPriorities)
			}
		},
	}, {
		name: "writes held when the planned failover is given up: the switchover failed, not retried",
		setup: func(f *redisv1alpha1.RedisSentinelFormation, o *observation) {
			inProgress(f, "any", "")
			f.Status.PlannedFailover = &redisv1alpha1.PlannedFailoverStatus{From: testName + "-1", Reason: "switchover", Phase: redisv1alpha1.PlannedFailoverHoldingWrites,
				HoldStartedAt: microTime(decideNow.Add(-2 * catchUpBound))}
			o.members[1].Repl.Offset = 900
		},
		check: func(t *testing.T, f *redisv1alpha1.RedisSentinelFormation, p plan) {
			if findAction(p, actReleaseWrites) == nil {
				t.Fatalf("actions %v, want ReleaseWrites", kinds(p))
			}
			if sw := f.Status.Switchover; sw.Phase != redisv1alpha1.SwitchoverFailed || sw.Reason != ReasonPlannedFailoverGivenUp {
				t.Fatalf("switchover %+v", sw)
			}
		},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f, o := switchoverCase(t)
			tc.setup(f, o)
			p := decide(f, o, Options{PasswordGrace: 10 * time.Minute, ResyncPeriod: 15 * time.Second}, decideNow)
			applyRecords(f, p)
			tc.check(t, f, p)
		})
	}
}

func TestWithholdWhilePaused(t *testing.T) {
	f, o := switchoverCase(t)
	f.Finalizers = nil
	o.members[2].instance.Status, o.members[2].Running = "Stopped", false
	p := decide(f, o, Options{}, decideNow)
	if findAction(p, actAddFinalizer) == nil {
		t.Fatalf("actions %v", kinds(p))
	}
	f.Finalizers = []string{finalizerName}
	p = decide(f, o, Options{}, decideNow)
	if findAction(p, actStart) == nil {
		t.Fatalf("actions %v, want StartInstance", kinds(p))
	}
	withhold(&p)
	if len(p.actions) != 0 || len(p.withheld) == 0 || p.requeueNow || p.progressing != "" {
		t.Fatalf("after withhold: actions %v withheld %d requeueNow %v progressing %q", kinds(p), len(p.withheld), p.requeueNow, p.progressing)
	}
	f.Finalizers = nil
	p = decide(f, o, Options{}, decideNow)
	withhold(&p)
	if !slices.Equal(kinds(p), []actionKind{actAddFinalizer}) {
		t.Fatalf("the finalizer is withheld: %v", kinds(p))
	}
}

// annotateFormation sets (or, with remove, deletes) an annotation like
// kubectl annotate: the generation does not change.
func (e *env) annotateFormation(key types.NamespacedName, name, value string, remove bool) {
	e.t.Helper()
	f := e.formation(key)
	if remove {
		delete(f.Annotations, name)
	} else {
		annotate(f, name, value)
	}
	if err := e.client.Update(context.Background(), f); err != nil {
		e.t.Fatalf("annotating the formation: %v", err)
	}
}

func (e *env) hasEvent(reason string) bool {
	return slices.ContainsFunc(e.recorder.events(), func(ev string) bool { return strings.Contains(ev, " "+reason+" ") })
}

// Switchovers on the fakes from request to outcome: a named replica and
// "any" each move the master once and give the priorities back; a bad
// request changes nothing.
func TestSwitchover(t *testing.T) {
	e := standardEnv(t)
	r := e.newReconciler()
	e.converge(r, testKey, 40)
	ask := func(value string, want redisv1alpha1.SwitchoverPhase) *redisv1alpha1.RedisSentinelFormation {
		t.Helper()
		e.annotateFormation(testKey, redisv1alpha1.AnnotationSwitchover, value, false)
		e.passesUntil(func() *FormationReconciler { return r }, testKey, 60, func() bool {
			sw := e.formation(testKey).Status.Switchover
			return sw != nil && sw.Request == value && sw.Phase != redisv1alpha1.SwitchoverInProgress
		}, nil)
		f := e.formation(testKey)
		if sw := f.Status.Switchover; sw.Phase != want {
			t.Fatalf("switchover to %s: %+v, want %s\n%s", value, sw, want, describe(f))
		}
		e.converge(r, testKey, 40)
		return e.formation(testKey)
	}
	f := e.formation(testKey)
	failovers, first := f.Status.Failovers, f.Status.Master.Member
	target := memberName(f, 3)
	if first == target {
		target = memberName(f, 2)
	}
	f = ask(target, redisv1alpha1.SwitchoverSucceeded)
	if f.Status.Master.Member != target || f.Status.Failovers != failovers+1 {
		t.Fatalf("master %s after %d failovers, want %s after %d", f.Status.Master.Member, f.Status.Failovers, target, failovers+1)
	}
	if c := meta.FindStatusCondition(f.Status.Conditions, redisv1alpha1.ConditionSwitchover); c == nil || c.Status != metav1.ConditionTrue || c.Reason != ReasonSwitchoverSucceeded {
		t.Fatalf("Switchover condition %+v", c)
	}
	if !e.hasEvent("SwitchoverSucceeded") {
		t.Fatalf("no SwitchoverSucceeded Event: %v", e.recorder.events())
	}
	for _, m := range f.Status.Members {
		if m.Name == target {
			continue
		}
		if repl, err := e.admin().Replication(context.Background(), redisEndpoint(m.Address)); err != nil || repl.Priority != 100 {
			t.Fatalf("%s's priority after the switchover: %d, %v", m.Name, repl.Priority, err)
		}
	}
	if sw := f.Status.Switchover; len(sw.LoweredPriorities) != 0 {
		t.Fatalf("priorities still recorded as lowered: %v", sw.LoweredPriorities)
	}

	f = ask("any", redisv1alpha1.SwitchoverSucceeded)
	if f.Status.Master.Member == target || f.Status.Failovers != failovers+2 || f.Status.Switchover.To != f.Status.Master.Member {
		t.Fatalf("after any: master %s (was %s), failovers %d, to %s", f.Status.Master.Member, target, f.Status.Failovers, f.Status.Switchover.To)
	}
	// The same value again is a request already handled.
	e.converge(r, testKey, 5)
	if got := e.formation(testKey); got.Status.Failovers != failovers+2 {
		t.Fatalf("a handled request was repeated: failovers %d", got.Status.Failovers)
	}

	master := f.Status.Master.Member
	for _, bad := range []struct{ value, reason string }{{"nope-9", ReasonUnknownMember}, {master, ReasonTargetIsMaster}} {
		f = ask(bad.value, redisv1alpha1.SwitchoverRefused)
		if f.Status.Switchover.Reason != bad.reason || f.Status.Master.Member != master || f.Status.Failovers != failovers+2 {
			t.Fatalf("request %s: %+v, master %s, failovers %d", bad.value, f.Status.Switchover, f.Status.Master.Member, f.Status.Failovers)
		}
		if c := meta.FindStatusCondition(f.Status.Conditions, redisv1alpha1.ConditionSwitchover); c == nil || c.Status != metav1.ConditionFalse || c.Reason != bad.reason {
			t.Fatalf("Switchover condition %+v", c)
		}
	}
	if !e.hasEvent("SwitchoverRefused") {
		t.Fatalf("no SwitchoverRefused Event: %v", e.recorder.events())
	}
	// Removing the annotation forgets the request: the same value asks again.
	e.annotateFormation(testKey, redisv1alpha1.AnnotationSwitchover, "", true)
	e.converge(r, testKey, 5)
	if sw := e.formation(testKey).Status.Switchover; sw.Request != "" || sw.Reason != ReasonTargetIsMaster {
		t.Fatalf("after removing the annotation: %+v", sw)
	}
	f = ask(master, redisv1alpha1.SwitchoverRefused)
	if f.Status.Switchover.Request != master {
		t.Fatalf("asking again: %+v", f.Status.Switchover)
	}
}

// A paused formation's stopped replica is not started, and status says so;
// once resumed it is.
func TestPause(t *testing.T) {
	e := standardEnv(t)
	r := e.newReconciler()
	e.converge(r, testKey, 40)
	e.annotateFormation(testKey, redisv1alpha1.AnnotationPause, "maintenance", false)
	f := e.formation(testKey)
	replica := 3
	if f.Status.Master.Member == memberName(f, 3) {
		replica = 2
	}
	if err := e.incus.StopInstance(context.Background(), testInstance(replica), false); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		e.advanceFor(e.reconcile(r, testKey))
	}
	f = e.formation(testKey)
	if inst := e.instances(f)[memberName(f, replica)]; inst.Status != "Stopped" {
		t.Fatalf("a paused formation's member was %s", inst.Status)
	}
	c := meta.FindStatusCondition(f.Status.Conditions, redisv1alpha1.ConditionPaused)
	if f.Status.Phase != redisv1alpha1.PhasePaused || c == nil || c.Status != metav1.ConditionTrue || !strings.Contains(c.Message, "StartInstance "+memberName(f, replica)) {
		t.Fatalf("phase %s, Paused condition %+v", f.Status.Phase, c)
	}
	if !e.hasEvent(ReasonPaused) {
		t.Fatalf("no Paused Event: %v", e.recorder.events())
	}
	e.annotateFormation(testKey, redisv1alpha1.AnnotationPause, "", true)
	e.converge(r, testKey, 40)
	f = e.formation(testKey)
	if c := meta.FindStatusCondition(f.Status.Conditions, redisv1alpha1.ConditionPaused); c == nil || c.Status != metav1.ConditionFalse || c.Reason != ReasonResumed {
		t.Fatalf("Paused condition after resuming %+v", c)
	}
	if !e.hasEvent(ReasonResumed) {
		t.Fatalf("no Resumed Event: %v", e.recorder.events())
	}
}
