package controllers

import (
	"encoding/json"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/internal/endpoint"
	"github.com/incusops/redis-sentinel-operator/internal/sentinel"
	"github.com/incusops/redis-sentinel-operator/internal/topology"
)

// switchStatus is a formation of three members, cache-1 the master at
// config epoch epoch.
func switchStatus(epoch int64) *redisv1alpha1.RedisSentinelFormation {
	f := newFormation(testName)
	for i := 1; i <= 3; i++ {
		f.Status.Members = append(f.Status.Members, redisv1alpha1.MemberStatus{Name: memberName(f, i), Address: memberHost(i)})
	}
	f.Status.Master = &redisv1alpha1.MasterStatus{Member: "cache-1", Address: memberHost(1), Port: 6379, ConfigEpoch: epoch}
	return f
}

func sw(from, to int, epoch int64, at time.Time) sentinel.Switch {
	return sentinel.Switch{Time: at, From: hostPort(redisEndpoint(memberHost(from))), To: hostPort(redisEndpoint(memberHost(to))), Epoch: epoch, SdownAt: at.Add(-2 * time.Second)}
}

func TestRecordSwitches(t *testing.T) {
	t0 := testStart
	cases := []struct {
		name string
		// rounds are the watcher's lists, one per pass.
		rounds        [][]sentinel.Switch
		epoch         int64
		wantFailovers int64
		wantMaster    string
		wantEpoch     int64
		wantSwitched  []bool
	}{{
		name:          "a switch replayed on every pass is counted once",
		epoch:         1,
		rounds:        [][]sentinel.Switch{{sw(1, 2, 2, t0)}, {sw(1, 2, 2, t0)}, {sw(1, 2, 2, t0)}},
		wantFailovers: 1, wantMaster: "cache-2", wantEpoch: 2,
		wantSwitched: []bool{true, false, false},
	}, {
		name:          "a switch older than the recorded master is ignored",
		epoch:         5,
		rounds:        [][]sentinel.Switch{{sw(1, 2, 4, t0)}},
		wantFailovers: 0, wantMaster: "cache-1", wantEpoch: 5,
		wantSwitched: []bool{false},
	}, {
		name:          "a switch whose epoch is unknown is left to the observation",
		epoch:         1,
		rounds:        [][]sentinel.Switch{{sw(1, 2, 0, t0)}},
		wantFailovers: 0, wantMaster: "cache-1", wantEpoch: 1,
		wantSwitched: []bool{false},
	}, {
		name:  "two switches are counted in order, then their replay is not",
		epoch: 1,
		rounds: [][]sentinel.Switch{
			{sw(1, 2, 2, t0), sw(2, 3, 3, t0.Add(time.Minute))},
			{sw(1, 2, 2, t0), sw(2, 3, 3, t0.Add(time.Minute))},
		},
		wantFailovers: 2, wantMaster: "cache-3", wantEpoch: 3,
		wantSwitched: []bool{true, false},
	}, {
		name:          "the same switch listed first without its epoch, then with it, counts once",
		epoch:         1,
		rounds:        [][]sentinel.Switch{{sw(1, 2, 0, t0)}, {sw(1, 2, 2, t0)}, {sw(1, 2, 2, t0)}},
		wantFailovers: 1, wantMaster: "cache-2", wantEpoch: 2,
		wantSwitched: []bool{false, true, false},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := switchStatus(tc.epoch)
			for i, round := range tc.rounds {
				switched, notes := recordSwitches(f, round)
				if switched != tc.wantSwitched[i] || (len(notes) > 0) != switched {
					t.Fatalf("round %d: switched %v with %d notes, want %v", i, switched, len(notes), tc.wantSwitched[i])
				}
				for _, n := range notes {
					if n.reason != "MasterSwitched" || n.failover == nil || *n.failover != (failoverNote{path: "sentinel", outage: 7 * time.Second}) {
						t.Fatalf("note %+v", n)
					}
				}
			}
			st := f.Status
			if st.Failovers != tc.wantFailovers || st.Master.Member != tc.wantMaster || st.Master.ConfigEpoch != tc.wantEpoch {
				t.Fatalf("failovers %d master %s@%d, want %d %s@%d", st.Failovers, st.Master.Member, st.Master.ConfigEpoch, tc.wantFailovers, tc.wantMaster, tc.wantEpoch)
			}
			if tc.wantFailovers > 0 {
				lf := st.LastFailover
				last := tc.rounds[len(tc.rounds)-1]
				want := last[len(last)-1]
				if lf == nil || lf.To != tc.wantMaster || lf.From != memberAt(f, want.From) || lf.ConfigEpoch != tc.wantEpoch ||
					!lf.Time.Time.Equal(want.Time) || lf.Duration == nil || lf.Duration.Duration != 7*time.Second {
					t.Fatalf("lastFailover %+v", lf)
				}
				if st.Master.Address != memberHost(memberIndex(tc.wantMaster)) || st.Master.Port != 6379 {
					t.Fatalf("master address %s:%d", st.Master.Address, st.Master.Port)
				}
			}
		})
	}
}

func memberIndex(name string) int { return int(name[len(name)-1] - '0') }

func TestRecordMaster(t *testing.T) {
	now := testStart.Add(time.Hour)
	plan := func(member int, epoch int64, stale ...string) topology.Plan {
		return topology.Plan{Master: redisEndpoint(memberHost(member)), MasterMember: memberName(newFormation(testName), member),
			Source: topology.SourceSentinels, Authoritative: true, ConfigEpoch: epoch, Stale: stale}
	}
	cases := []struct {
		name   string
		status func() *redisv1alpha1.RedisSentinelFormationStatus
		plans  []topology.Plan
		// switches are the watcher's, as the pass observed them.
		switches      []sentinel.Switch
		wantFailovers int64
		wantMaster    string
		wantEpoch     int64
		wantFrom      string
		// wantAt is the failover's time (now when zero); wantOutage its
		// measured duration (none when zero).
		wantAt     time.Time
		wantOutage time.Duration
	}{{
		name: "the first master is a bootstrap, not a failover",
		status: func() *redisv1alpha1.RedisSentinelFormationStatus {
			return &redisv1alpha1.RedisSentinelFormationStatus{}
		},
		plans:      []topology.Plan{plan(1, 0), plan(1, 0)},
		wantMaster: "cache-1", wantEpoch: 0,
	}, {
		name:          "a failover missed by the operator is counted once, by the first pass that sees it",
		status:        func() *redisv1alpha1.RedisSentinelFormationStatus { return &switchStatus(1).Status },
		plans:         []topology.Plan{plan(2, 2), plan(2, 2), plan(2, 2)},
		wantFailovers: 1, wantMaster: "cache-2", wantEpoch: 2, wantFrom: "cache-1",
	}, {
		name:          "a failover the watcher heard while the pass observed is timed by its +switch-master and the old master's first +sdown",
		status:        func() *redisv1alpha1.RedisSentinelFormationStatus { return &switchStatus(1).Status },
		plans:         []topology.Plan{plan(2, 2), plan(2, 2)},
		switches:      []sentinel.Switch{sw(1, 2, 2, now.Add(-3*time.Second))},
		wantFailovers: 1, wantMaster: "cache-2", wantEpoch: 2, wantFrom: "cache-1",
		wantAt: now.Add(-3 * time.Second), wantOutage: 7 * time.Second,
	}, {
		name:          "so is one whose epoch the watcher could not read, by its members",
		status:        func() *redisv1alpha1.RedisSentinelFormationStatus { return &switchStatus(1).Status },
		plans:         []topology.Plan{plan(2, 2)},
		switches:      []sentinel.Switch{sw(1, 2, 0, now.Add(-3*time.Second))},
		wantFailovers: 1, wantMaster: "cache-2", wantEpoch: 2, wantFrom: "cache-1",
		wantAt: now.Add(-3 * time.Second), wantOutage: 7 * time.Second,
	}, {
		name:          "the watcher's other switches (another epoch, another new master) do not time it",
		status:        func() *redisv1alpha1.RedisSentinelFormationStatus { return &switchStatus(1).Status },
		plans:         []topology.Plan{plan(2, 2)},
		switches:      []sentinel.Switch{sw(1, 2, 1, now.Add(-time.Minute)), sw(1, 3, 0, now.Add(-3*time.Second))},
		wantFailovers: 1, wantMaster: "cache-2", wantEpoch: 2, wantFrom: "cache-1",
	}, {
		name:       "a lagging sentinel with an older epoch does not move the master back",
		status:     func() *redisv1alpha1.RedisSentinelFormationStatus { return &switchStatus(3).Status },
		plans:      []topology.Plan{plan(2, 2, "cache-3")},
		wantMaster: "cache-1", wantEpoch: 3,
	}, {
		name:   "a minority view is not recorded",
		status: func() *redisv1alpha1.RedisSentinelFormationStatus { return &switchStatus(1).Status },
		plans: []topology.Plan{func() topology.Plan {
			p := plan(2, 2)
			p.Source, p.Authoritative = topology.SourceSentinelMinority, false
			return p
		}()},
		wantMaster: "cache-1", wantEpoch: 1,
	}, {
		name:   "nothing is recorded during a failover",
		status: func() *redisv1alpha1.RedisSentinelFormationStatus { return &switchStatus(1).Status },
		plans: []topology.Plan{func() topology.Plan {
			p := plan(2, 2)
			p.FailoverInProgress = true
			return p
		}()},
		wantMaster: "cache-1", wantEpoch: 1,
	}, {
		name:       "the same master at a newer epoch updates the epoch without counting",
		status:     func() *redisv1alpha1.RedisSentinelFormationStatus { return &switchStatus(1).Status },
		plans:      []topology.Plan{plan(1, 4)},
		wantMaster: "cache-1", wantEpoch: 4,
	}, {
		name:       "every sentinel agreeing on an older epoch (all rebuilt, or a renamed master monitored afresh) is believed; the epoch is kept, or the watcher's earlier switches would count again",
		status:     func() *redisv1alpha1.RedisSentinelFormationStatus { return &switchStatus(3).Status },
		plans:      []topology.Plan{plan(1, 0)},
		wantMaster: "cache-1", wantEpoch: 3,
	}, {
		name:          "after that, a failover at an epoch below the recorded one is counted once",
		status:        func() *redisv1alpha1.RedisSentinelFormationStatus { return &switchStatus(3).Status },
		plans:         []topology.Plan{plan(1, 0), plan(2, 1), plan(2, 1)},
		wantFailovers: 1, wantMaster: "cache-2", wantEpoch: 1, wantFrom: "cache-1",
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFormation(testName)
			f.Status = *tc.status()
			st := &f.Status
			var notes []note
			for _, p := range tc.plans {
				notes = append(notes, recordMaster(f, p, now, tc.switches)...)
			}
			if st.Failovers != tc.wantFailovers || int64(len(notes)) != tc.wantFailovers {
				t.Fatalf("failovers %d (%d notes), want %d", st.Failovers, len(notes), tc.wantFailovers)
			}
			if st.Master == nil || st.Master.Member != tc.wantMaster || st.Master.ConfigEpoch != tc.wantEpoch {
				t.Fatalf("master %+v, want %s@%d", st.Master, tc.wantMaster, tc.wantEpoch)
			}
			if tc.wantFailovers > 0 {
				lf := st.LastFailover
				at := now
				if !tc.wantAt.IsZero() {
					at = tc.wantAt
				}
				if lf == nil || lf.From != tc.wantFrom || lf.To != tc.wantMaster || lf.ConfigEpoch != tc.wantEpoch || !lf.Time.Time.Equal(at) {
					t.Fatalf("lastFailover %+v", lf)
				}
				if outage := ptr.Deref(lf.Duration, metav1.Duration{}).Duration; outage != tc.wantOutage {
					t.Fatalf("lastFailover outage %v, want %v", outage, tc.wantOutage)
				}
				if st.Master.Since == nil || !st.Master.Since.Time.Equal(metav1.NewTime(at).Time) {
					t.Fatalf("master since %v", st.Master.Since)
				}
			}
		})
	}
}

// An idle pass writes nothing: what it copies into status from memory
// (Sentinel's events) must equal what the API server gave back, which
// keeps times to the microsecond.
func TestIdlePassChangesNothingAfterARoundTrip(t *testing.T) {
	at := time.Date(2026, 11, 30, 12, 0, 0, 123456789, time.UTC)
	events := []sentinel.Event{{Time: at, Sentinel: "cache-1", Type: "+sdown", Payload: "master mymaster 10.0.0.1 6379"}}
	var st redisv1alpha1.RedisSentinelFormationStatus
	recordEvents(&st, events)
	raw, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	var stored redisv1alpha1.RedisSentinelFormationStatus
	if err := json.Unmarshal(raw, &stored); err != nil {
		t.Fatal(err)
	}
	next := stored.DeepCopy()
	recordEvents(next, events)
	if !equality.Semantic.DeepEqual(&stored, next) {
		t.Fatalf("the same events differ from their stored copy: %v vs %v", stored.RecentEvents[0].Time, next.RecentEvents[0].Time)
	}
}

// A failover the operator missed is dated by the sentinels' own account:
// the earliest role-reported-time among those monitoring the new master.
func TestTakenOverUsesTheSentinelsRoleReportedTime(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	master := endpoint.Endpoint{Host: "10.0.0.3", Port: 6379}
	view := func(addr endpoint.Endpoint, ago time.Duration) *memberObs {
		m := &memberObs{}
		m.Running, m.View.Address, m.View.RoleReportedAgo = true, addr, ago
		return m
	}
	tp := topology.Plan{Master: master}
	for _, tc := range []struct {
		name    string
		members []*memberObs
		want    time.Time
	}{
		{"the earliest report wins", []*memberObs{view(master, 3*time.Second), view(master, 5*time.Second)}, now.Add(-5 * time.Second)},
		{"a sentinel on another master does not count", []*memberObs{view(master, 2*time.Second), view(endpoint.Endpoint{Host: "10.0.0.2", Port: 6379}, time.Minute)}, now.Add(-2 * time.Second)},
		{"no report: the time it was seen", []*memberObs{view(master, 0)}, now},
	} {
		if got := takenOver(&observation{members: tc.members}, tp, now); !got.Equal(tc.want) {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}
