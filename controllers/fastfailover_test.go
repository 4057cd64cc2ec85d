package controllers

import (
	"errors"
	"strings"
	"testing"
	"time"

	"k8s.io/utils/ptr"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/internal/endpoint"
	"github.com/incusops/redis-sentinel-operator/internal/sentinel"
	"github.com/incusops/redis-sentinel-operator/internal/topology"
)

var (
	errConnRefused = errors.New("connection refused")
	errTimeout     = errors.New("i/o timeout")
)

// inSyncCase is healthyCase whose status recorded members 2 and 3 as the
// master's linked replicas, caught up.
func inSyncCase(t *testing.T) (*redisv1alpha1.RedisSentinelFormation, *observation) {
	f, o := healthyCase(t)
	for i := range f.Status.Members {
		st := &f.Status.Members[i]
		st.Role, st.Health, st.MasterLinkUp = redisv1alpha1.RoleReplica, redisv1alpha1.HealthHealthy, true
	}
	f.Status.Members[0].Role, f.Status.Members[0].MasterLinkUp = redisv1alpha1.RoleMaster, false
	f.Status.Master.Since = timePtr(decideNow.Add(-time.Hour))
	return f, o
}

// stopMaster makes member 1's container stopped as observe sees it: no
// address, nothing dialled, its home address known. Incus reported the
// stop at stoppedAt.
func stopMaster(o *observation, stoppedAt time.Time) {
	m := o.members[0]
	home := m.Home
	stop(m)
	m.Home = home
	o.instanceStops = map[string]time.Time{m.instanceName: stoppedAt}
}

// applied is the status after the plan's records and every action's record
// (as if each succeeded).
func applied(f *redisv1alpha1.RedisSentinelFormation, p plan) *redisv1alpha1.RedisSentinelFormationStatus {
	st := f.Status.DeepCopy()
	for _, rec := range p.record {
		if rec != nil {
			rec(st)
		}
	}
	for _, a := range p.actions {
		if a.record != nil {
			a.record(st)
		}
	}
	return st
}

func TestDecideFastFailover(t *testing.T) {
	stoppedAt := decideNow.Add(-1200 * time.Millisecond)
	sdownAt := decideNow.Add(-100 * time.Millisecond)
	sdown := func(o *observation, typ string, at time.Time) {
		o.events = append(o.events, sentinel.Event{Time: at, Sentinel: "cache-2", Type: typ, Payload: "master mymaster " + memberHost(1) + " 6379"})
	}
	cases := []struct {
		name  string
		setup func(f *redisv1alpha1.RedisSentinelFormation, o *observation)
		// failover: SENTINEL FAILOVER is the plan's first action.
		failover bool
		// outage: what status.masterOutage records (nil: none).
		outage *redisv1alpha1.MasterOutageStatus
		// progressing is part of the plan's progress message.
		progressing string
	}{{
		name:     "master's container stopped, replicas in sync: fast failover first",
		setup:    func(_ *redisv1alpha1.RedisSentinelFormation, o *observation) { stopMaster(o, stoppedAt) },
		failover: true,
		outage:   &redisv1alpha1.MasterOutageStatus{Member: "cache-1", LostAt: microTime(stoppedAt), DetectedAt: microTime(decideNow), DetectedBy: redisv1alpha1.DetectedByIncus, FailoverRequestedAt: microTimePtr(decideNow), Sentinel: "cache-2"},
	}, {
		name: "master's container gone: fast failover, lost when this pass saw it",
		setup: func(_ *redisv1alpha1.RedisSentinelFormation, o *observation) {
			m := o.members[0]
			m.instance, m.Running, m.Redis, m.Sentinel = nil, false, endpoint.Endpoint{}, endpoint.Endpoint{}
		},
		failover: true,
		outage:   &redisv1alpha1.MasterOutageStatus{Member: "cache-1", LostAt: microTime(decideNow), DetectedAt: microTime(decideNow), DetectedBy: redisv1alpha1.DetectedByIncus, FailoverRequestedAt: microTimePtr(decideNow), Sentinel: "cache-2"},
	}, {
		name: "container runs but redis-server is not running (held down after a restart): fast failover",
		setup: func(_ *redisv1alpha1.RedisSentinelFormation, o *observation) {
			m := o.members[0]
			m.RedisErr = errConnRefused
			m.Probe = &topology.Probe{Configured: true, RedisActive: false, SentinelActive: true}
		},
		failover: true, // its own sentinel answers, but another member's is asked
		outage:   &redisv1alpha1.MasterOutageStatus{Member: "cache-1", LostAt: microTime(decideNow), DetectedAt: microTime(decideNow), DetectedBy: redisv1alpha1.DetectedByIncus, FailoverRequestedAt: microTimePtr(decideNow), Sentinel: "cache-2"},
	}, {
		name: "spec.sentinel.fastFailover off: the outage is recorded, the promotion left to Sentinel",
		setup: func(f *redisv1alpha1.RedisSentinelFormation, o *observation) {
			f.Spec.Sentinel.FastFailover = ptr.To(false)
			stopMaster(o, stoppedAt)
		},
		outage:      &redisv1alpha1.MasterOutageStatus{Member: "cache-1", LostAt: microTime(stoppedAt), DetectedAt: microTime(decideNow), DetectedBy: redisv1alpha1.DetectedByIncus},
		progressing: "fastFailover is off",
	}, {
		name: "master's container runs and its redis-server does not answer (a partition, a hung process): Sentinel's call",
		setup: func(_ *redisv1alpha1.RedisSentinelFormation, o *observation) {
			m := o.members[0]
			m.RedisErr, m.SentinelErr = errTimeout, errTimeout
			m.Probe = &topology.Probe{Configured: true, RedisActive: true, SentinelActive: true}
		},
	}, {
		name: "partitioned master after +sdown: the outage is recorded from the +sdown, no failover asked",
		setup: func(_ *redisv1alpha1.RedisSentinelFormation, o *observation) {
			m := o.members[0]
			m.RedisErr, m.SentinelErr = errTimeout, errTimeout
			m.Probe = &topology.Probe{Configured: true, RedisActive: true, SentinelActive: true}
			sdown(o, "+sdown", sdownAt)
		},
		outage: &redisv1alpha1.MasterOutageStatus{Member: "cache-1", LostAt: microTime(sdownAt.Add(-5 * time.Second)), DetectedAt: microTime(sdownAt), DetectedBy: redisv1alpha1.DetectedBySentinel},
	}, {
		name: "a +sdown healed by -sdown is no outage",
		setup: func(_ *redisv1alpha1.RedisSentinelFormation, o *observation) {
			sdown(o, "+sdown", sdownAt.Add(-time.Second))
			sdown(o, "-sdown", sdownAt)
		},
	}, {
		name: "a +sdown from before the master took over is no outage",
		setup: func(f *redisv1alpha1.RedisSentinelFormation, o *observation) {
			sdown(o, "+sdown", decideNow.Add(-2*time.Hour))
		},
	}, {
		name:  "a frozen container is not gone: thawed it would serve again",
		setup: func(_ *redisv1alpha1.RedisSentinelFormation, o *observation) { o.members[0].instance.Status = "Frozen" },
	}, {
		name: "no replica was caught up when last seen: left to Sentinel",
		setup: func(f *redisv1alpha1.RedisSentinelFormation, o *observation) {
			for i := 1; i < 3; i++ {
				f.Status.Members[i].LagBytes = inSyncLag + 1
			}
			stopMaster(o, stoppedAt)
		},
		outage:      &redisv1alpha1.MasterOutageStatus{Member: "cache-1", LostAt: microTime(stoppedAt), DetectedAt: microTime(decideNow), DetectedBy: redisv1alpha1.DetectedByIncus},
		progressing: "no replica was linked and caught up",
	}, {
		name: "the caught-up replica's link was down when last seen: left to Sentinel",
		setup: func(f *redisv1alpha1.RedisSentinelFormation, o *observation) {
			f.Status.Members[1].MasterLinkUp, f.Status.Members[1].Health = false, redisv1alpha1.HealthSyncing
			f.Status.Members[2].LagBytes = inSyncLag + 1
			stopMaster(o, stoppedAt)
		},
		outage:      &redisv1alpha1.MasterOutageStatus{Member: "cache-1", LostAt: microTime(stoppedAt), DetectedAt: microTime(decideNow), DetectedBy: redisv1alpha1.DetectedByIncus},
		progressing: "no replica was linked and caught up",
	}, {
		name: "only one sentinel of three answers: no majority, left to Sentinel",
		setup: func(_ *redisv1alpha1.RedisSentinelFormation, o *observation) {
			stopMaster(o, stoppedAt)
			o.members[2].SentinelErr = errTimeout
		},
		outage:      &redisv1alpha1.MasterOutageStatus{Member: "cache-1", LostAt: microTime(stoppedAt), DetectedAt: microTime(decideNow), DetectedBy: redisv1alpha1.DetectedByIncus},
		progressing: "majority",
	}, {
		name: "paused: the outage is recorded, nothing asked",
		setup: func(f *redisv1alpha1.RedisSentinelFormation, o *observation) {
			f.Annotations = map[string]string{redisv1alpha1.AnnotationPause: "true"}
			stopMaster(o, stoppedAt)
		},
		outage:      &redisv1alpha1.MasterOutageStatus{Member: "cache-1", LostAt: microTime(stoppedAt), DetectedAt: microTime(decideNow), DetectedBy: redisv1alpha1.DetectedByIncus},
		progressing: "paused",
	}, {
		name: "already asked for this outage: not asked twice",
		setup: func(f *redisv1alpha1.RedisSentinelFormation, o *observation) {
			stopMaster(o, stoppedAt)
			f.Status.MasterOutage = &redisv1alpha1.MasterOutageStatus{Member: "cache-1", LostAt: microTime(stoppedAt), DetectedAt: microTime(stoppedAt), DetectedBy: redisv1alpha1.DetectedByIncus, FailoverRequestedAt: microTimePtr(stoppedAt), Sentinel: "cache-3"}
		},
		outage:      &redisv1alpha1.MasterOutageStatus{Member: "cache-1", LostAt: microTime(stoppedAt), DetectedAt: microTime(stoppedAt), DetectedBy: redisv1alpha1.DetectedByIncus, FailoverRequestedAt: microTimePtr(stoppedAt), Sentinel: "cache-3"},
		progressing: "was asked at",
	}, {
		name: "a planned failover is under way: left to it",
		setup: func(f *redisv1alpha1.RedisSentinelFormation, o *observation) {
			stopMaster(o, stoppedAt)
			f.Status.PlannedFailover = &redisv1alpha1.PlannedFailoverStatus{From: "cache-1", Phase: redisv1alpha1.PlannedFailoverPromoting, HoldStartedAt: microTime(stoppedAt)}
		},
		outage: &redisv1alpha1.MasterOutageStatus{Member: "cache-1", LostAt: microTime(stoppedAt), DetectedAt: microTime(decideNow), DetectedBy: redisv1alpha1.DetectedByIncus},
	}, {
		name: "recorded when the stop was seen, not heard from Incus: the +sdown that follows dates the loss",
		setup: func(f *redisv1alpha1.RedisSentinelFormation, o *observation) {
			stopMaster(o, time.Time{})
			o.instanceStops = nil
			f.Status.MasterOutage = &redisv1alpha1.MasterOutageStatus{Member: "cache-1", LostAt: microTime(sdownAt.Add(-time.Second)), DetectedAt: microTime(sdownAt.Add(-time.Second)), DetectedBy: redisv1alpha1.DetectedByIncus, FailoverRequestedAt: microTimePtr(sdownAt.Add(-time.Second)), Sentinel: "cache-2"}
			sdown(o, "+sdown", sdownAt)
		},
		outage:      &redisv1alpha1.MasterOutageStatus{Member: "cache-1", LostAt: microTime(sdownAt.Add(-5 * time.Second)), DetectedAt: microTime(sdownAt.Add(-time.Second)), DetectedBy: redisv1alpha1.DetectedByIncus, FailoverRequestedAt: microTimePtr(sdownAt.Add(-time.Second)), Sentinel: "cache-2"},
		progressing: "was asked at",
	}, {
		name: "the master answers again: the outage record is dropped",
		setup: func(f *redisv1alpha1.RedisSentinelFormation, _ *observation) {
			f.Status.MasterOutage = &redisv1alpha1.MasterOutageStatus{Member: "cache-1", LostAt: microTime(stoppedAt), DetectedAt: microTime(stoppedAt), DetectedBy: redisv1alpha1.DetectedByIncus}
		},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f, o := inSyncCase(t)
			tc.setup(f, o)
			p := decide(f, o, Options{PasswordGrace: 10 * time.Minute, ResyncPeriod: 15 * time.Second}, decideNow)
			first := len(p.actions) > 0 && p.actions[0].kind == actSentinelFailover
			if first != tc.failover {
				t.Fatalf("SENTINEL FAILOVER first: %v, want %v (actions %v, progressing %q)", first, tc.failover, kinds(p), p.progressing)
			}
			if tc.failover {
				if a := p.actions[0]; a.member != tc.outage.Sentinel || a.target != o.member(a.member).Sentinel {
					t.Fatalf("asked %s at %s, want %s's sentinel", a.member, a.target, tc.outage.Sentinel)
				}
			} else if a := findAction(p, actSentinelFailover); a != nil {
				t.Fatalf("SENTINEL FAILOVER asked: %+v", a)
			}
			st := applied(f, p)
			if !equalOutage(st.MasterOutage, tc.outage) {
				t.Fatalf("masterOutage %s, want %s", describeOutage(st.MasterOutage), describeOutage(tc.outage))
			}
			if !strings.Contains(p.progressing, tc.progressing) {
				t.Fatalf("progressing %q, want it to say %q", p.progressing, tc.progressing)
			}
		})
	}
}

func equalOutage(a, b *redisv1alpha1.MasterOutageStatus) bool {
	if a == nil || b == nil {
		return a == b
	}
	return describeOutage(a) == describeOutage(b)
}

func describeOutage(o *redisv1alpha1.MasterOutageStatus) string {
	if o == nil {
		return "none"
	}
	asked := "not asked"
	if o.FailoverRequestedAt != nil {
		asked = "asked " + o.Sentinel + " at " + o.FailoverRequestedAt.UTC().Format(time.StampMicro)
	}
	return o.Member + " lost " + o.LostAt.UTC().Format(time.StampMicro) + " detected " + o.DetectedAt.UTC().Format(time.StampMicro) + " by " + string(o.DetectedBy) + ", " + asked
}

// TestCountFailoverPaths: the path and the outage of a recorded switch come
// from the operator's own records, else from the first +sdown.
func TestCountFailoverPaths(t *testing.T) {
	switched := decideNow
	lost := switched.Add(-2900 * time.Millisecond)
	cases := []struct {
		name     string
		setup    func(st *redisv1alpha1.RedisSentinelFormationStatus)
		sdownAt  time.Time
		path     redisv1alpha1.FailoverPath
		outage   time.Duration
		lostAt   time.Time
		detected time.Time
	}{{
		name: "fast: from Incus's stop to the announcement",
		setup: func(st *redisv1alpha1.RedisSentinelFormationStatus) {
			st.MasterOutage = &redisv1alpha1.MasterOutageStatus{Member: "cache-1", LostAt: microTime(lost), DetectedAt: microTime(lost.Add(1200 * time.Millisecond)), DetectedBy: redisv1alpha1.DetectedByIncus, FailoverRequestedAt: microTimePtr(lost.Add(1300 * time.Millisecond)), Sentinel: "cache-2"}
		},
		sdownAt: switched.Add(time.Second), // a late +sdown changes nothing
		path:    redisv1alpha1.FailoverPathFast, outage: 2900 * time.Millisecond, lostAt: lost, detected: lost.Add(1200 * time.Millisecond),
	}, {
		name: "Sentinel, the stop seen by Incus (fastFailover off)",
		setup: func(st *redisv1alpha1.RedisSentinelFormationStatus) {
			st.MasterOutage = &redisv1alpha1.MasterOutageStatus{Member: "cache-1", LostAt: microTime(lost), DetectedAt: microTime(lost.Add(time.Second)), DetectedBy: redisv1alpha1.DetectedByIncus}
		},
		path: redisv1alpha1.FailoverPathSentinel, outage: 2900 * time.Millisecond, lostAt: lost, detected: lost.Add(time.Second),
	}, {
		name:    "Sentinel, only the +sdown seen: lost a down-after before it",
		setup:   func(*redisv1alpha1.RedisSentinelFormationStatus) {},
		sdownAt: switched.Add(-1300 * time.Millisecond),
		path:    redisv1alpha1.FailoverPathSentinel, outage: 6300 * time.Millisecond, lostAt: switched.Add(-6300 * time.Millisecond), detected: switched.Add(-1300 * time.Millisecond),
	}, {
		name:  "Sentinel, nothing seen: not measured",
		setup: func(*redisv1alpha1.RedisSentinelFormationStatus) {},
		path:  redisv1alpha1.FailoverPathSentinel,
	}, {
		name: "planned: from the write hold",
		setup: func(st *redisv1alpha1.RedisSentinelFormationStatus) {
			st.PlannedFailover = &redisv1alpha1.PlannedFailoverStatus{From: "cache-1", Reason: "switchover", Phase: redisv1alpha1.PlannedFailoverPromoting, HoldStartedAt: microTime(switched.Add(-800 * time.Millisecond)), RequestedAt: microTimePtr(switched.Add(-700 * time.Millisecond))}
		},
		path: redisv1alpha1.FailoverPathPlanned, outage: 800 * time.Millisecond,
	}, {
		name: "an outage record of another member is not this switch's",
		setup: func(st *redisv1alpha1.RedisSentinelFormationStatus) {
			st.MasterOutage = &redisv1alpha1.MasterOutageStatus{Member: "cache-3", LostAt: microTime(lost), DetectedAt: microTime(lost), DetectedBy: redisv1alpha1.DetectedByIncus, FailoverRequestedAt: microTimePtr(lost)}
		},
		path: redisv1alpha1.FailoverPathSentinel,
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFormation(testName)
			tc.setup(&f.Status)
			n := countFailover(f, "cache-1", "cache-2", switched, 7, tc.sdownAt)
			lf := f.Status.LastFailover
			if f.Status.Failovers != 1 || lf.Path != tc.path || f.Status.MasterOutage != nil {
				t.Fatalf("failovers %d path %s outage record %+v, want 1 %s and none", f.Status.Failovers, lf.Path, f.Status.MasterOutage, tc.path)
			}
			var got time.Duration
			if lf.Duration != nil {
				got = lf.Duration.Duration
			}
			if got != tc.outage || n.failover.outage != tc.outage || n.failover.path != strings.ToLower(string(tc.path)) {
				t.Fatalf("duration %s, note %+v; want %s via %s", got, n.failover, tc.outage, tc.path)
			}
			if !tc.lostAt.IsZero() && (lf.MasterLostAt == nil || !lf.MasterLostAt.Equal(ptr.To(microTime(tc.lostAt))) || lf.DetectedAt == nil || !lf.DetectedAt.Time.Equal(tc.detected)) {
				t.Fatalf("lost %v detected %v, want %s %s", lf.MasterLostAt, lf.DetectedAt, tc.lostAt, tc.detected)
			}
			if !strings.Contains(n.message, "through the "+strings.ToLower(string(tc.path))+" path") {
				t.Fatalf("event %q does not name the path", n.message)
			}
		})
	}
}

// TestMasterGoneNotWhileItAnswers: a master whose redis-server answers is
// not gone, even when systemd no longer calls its unit active (its stop
// waits in the handover gate during an evacuation).
func TestMasterGoneNotWhileItAnswers(t *testing.T) {
	_, o := healthyCase(t)
	m := o.members[0]
	m.Probe = &topology.Probe{Configured: true, RedisActive: false, SentinelActive: false}
	if why := masterGone(o, m); why != "" {
		t.Fatalf("an answering master is gone: %s", why)
	}
	m.RedisErr = errors.New("connection refused")
	if why := masterGone(o, m); why == "" {
		t.Fatal("a master that neither answers nor runs is not gone")
	}
}
