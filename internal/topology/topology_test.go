package topology

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/incusops/redis-sentinel-operator/internal/endpoint"
	"github.com/incusops/redis-sentinel-operator/internal/redisadmin"
)

var (
	desired = Desired{MasterName: "mymaster", Members: 3, Quorum: 2, DownAfterMs: 5000, FailoverTimeoutMs: 30000, ParallelSyncs: 1}
	now     = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	errDown = errors.New("connection refused")
)

func ep(n int) endpoint.Endpoint {
	return endpoint.Endpoint{Host: fmt.Sprintf("10.77.0.%d", 10+n), Port: 6379}
}

// member builds a healthy member n (1-based) whose sentinel sees master
// `master` and whose redis follows it (or is it).
func member(n, master int) Member {
	m := Member{
		Name:     fmt.Sprintf("cache-%d", n),
		Redis:    ep(n),
		Home:     ep(n),
		Sentinel: endpoint.Endpoint{Host: ep(n).Host, Port: 26379},
		Running:  true,
		View: redisadmin.MasterState{
			Address: ep(master), Flags: []string{"master"}, Quorum: 2, DownAfterMs: 5000,
			FailoverTimeoutMs: 30000, ParallelSyncs: 1, NumReplicas: 2, NumOtherSentinels: 2, ConfigEpoch: 1,
		},
	}
	if n == master {
		m.Repl = redisadmin.Replication{Role: "master", Offset: 5000, ConnectedReplicas: 2}
	} else {
		m.Repl = redisadmin.Replication{Role: "slave", Master: ep(master), LinkUp: true, Offset: 5000}
	}
	return m
}

// awaitingMasterView is a replica configured while its master was not:
// its sentinel has the long down-after and its link is not up yet.
func awaitingMasterView(m *Member) {
	m.View.DownAfterMs = AwaitMasterDownAfterMs
	m.Repl.LinkUp, m.Repl.Offset = false, 0
}

// untrustedView makes a member's sentinel monitor a host that is no member,
// with a newer config epoch than anyone's (what SENTINEL MONITOR by an
// intruder looks like).
func untrustedView(m *Member) {
	m.View.Address, m.View.ConfigEpoch = endpoint.Endpoint{Host: "10.66.0.99", Port: 6379}, 9
}

// renamed makes members ns monitor the master under the name "oldname",
// not the desired one.
func renamed(ms []Member, ns ...int) []Member {
	for _, n := range ns {
		ms = with(ms, n, func(m *Member) { m.OtherNames = []string{"oldname"} })
	}
	return ms
}

func healthy(master int) []Member {
	return []Member{member(1, master), member(2, master), member(3, master)}
}

func with(ms []Member, n int, f func(*Member)) []Member {
	out := slices.Clone(ms)
	f(&out[n-1])
	return out
}

// act renders a plan's actions as "Kind member -> target" for comparison.
func act(p Plan) []string {
	var out []string
	for _, a := range p.Actions {
		s := string(a.Kind) + " " + a.Member
		if !a.Target.IsZero() {
			s += " -> " + a.Target.String()
		}
		if len(a.Settings) > 0 {
			keys := make([]string, 0, len(a.Settings))
			for k, v := range a.Settings {
				keys = append(keys, k+"="+v)
			}
			slices.Sort(keys)
			s += " " + strings.Join(keys, ",")
		}
		out = append(out, s)
	}
	return out
}

func TestDecide(t *testing.T) {
	unconfigured := &Probe{Configured: false}
	redisStopped := &Probe{Configured: true, RedisActive: false, SentinelActive: true}
	sentinelStopped := &Probe{Configured: true, RedisActive: true, SentinelActive: false}

	cases := []struct {
		name         string
		members      []Member
		previous     string
		lastReset    map[string]time.Time
		lastRebuild  time.Time
		staleSince   map[string]time.Time
		departing    int
		awaitMembers bool // within Input.AwaitMembersUntil
		wantMaster   string
		wantSource   Source
		wantFailover bool
		wantActions  []string
	}{
		{
			name:       "healthy formation: nothing to do",
			members:    healthy(1),
			wantMaster: "cache-1", wantSource: SourceSentinels,
		},
		{
			name: "new formation: member 1 is bootstrapped as master, the others as its replicas",
			members: []Member{
				{Name: "cache-1", Redis: ep(1), Running: true, RedisErr: errDown, SentinelErr: errDown, Probe: unconfigured},
				{Name: "cache-2", Redis: ep(2), Running: true, RedisErr: errDown, SentinelErr: errDown, Probe: unconfigured},
				{Name: "cache-3", Redis: ep(3), Running: true, RedisErr: errDown, SentinelErr: errDown, Probe: unconfigured},
			},
			awaitMembers: true,
			wantMaster:   "cache-1", wantSource: SourceBootstrap,
			// The replicas' sentinels may run before the master does.
			wantActions: []string{"Configure cache-1", "Configure cache-2 -> 10.77.0.11:6379 down-after-milliseconds=30000", "Configure cache-3 -> 10.77.0.11:6379 down-after-milliseconds=30000"},
		},
		{
			name: "new formation whose master's configuration lags its replicas': the master is configured, the sentinels keep their long down-after meanwhile",
			members: []Member{
				{Name: "cache-1", Redis: ep(1), Home: ep(1), Running: true, RedisErr: errDown, SentinelErr: errDown, Probe: unconfigured},
				with(healthy(1), 2, awaitingMasterView)[1],
				with(healthy(1), 3, awaitingMasterView)[2],
			},
			awaitMembers: true,
			wantMaster:   "cache-1", wantSource: SourceSentinels,
			wantActions: []string{"Configure cache-1"},
		},
		{
			name:       "once the master is configured, the sentinels that waited for it get the spec's down-after",
			members:    with(with(healthy(1), 2, awaitingMasterView), 3, awaitingMasterView),
			wantMaster: "cache-1", wantSource: SourceSentinels,
			wantActions: []string{"SentinelSet cache-2 down-after-milliseconds=5000", "SentinelSet cache-3 down-after-milliseconds=5000"},
		},
		{
			name:       "every sentinel monitors an address that is no member's: never followed, the redis-servers tell, the sentinels are re-pointed",
			members:    with(with(with(healthy(1), 1, untrustedView), 2, untrustedView), 3, untrustedView),
			wantMaster: "cache-1", wantSource: SourceRedis,
			wantActions: []string{"Remonitor cache-1 -> 10.77.0.11:6379", "Remonitor cache-2 -> 10.77.0.11:6379", "Remonitor cache-3 -> 10.77.0.11:6379"},
		},
		{
			name:       "a majority of sentinels monitors an address that is no member's: the member sentinel's view stands, the others are re-pointed",
			members:    with(with(healthy(1), 1, untrustedView), 2, untrustedView),
			wantMaster: "cache-1", wantSource: SourceSentinelMinority,
			wantActions: []string{"Remonitor cache-1 -> 10.77.0.11:6379", "Remonitor cache-2 -> 10.77.0.11:6379"},
		},
		{
			name: "two masters: the one the sentinels do not name is demoted",
			members: with(healthy(1), 3, func(m *Member) {
				m.Repl = redisadmin.Replication{Role: "master", Offset: 10}
			}),
			wantMaster: "cache-1", wantSource: SourceSentinels,
			wantActions: []string{"ReplicaOf cache-3 -> 10.77.0.11:6379"},
		},
		{
			name: "old master back after a failover: sentinels follow cache-2, cache-1 still thinks it is master",
			members: with(with(with(healthy(2), 1, func(m *Member) {
				m.Repl = redisadmin.Replication{Role: "master", Offset: 4000}
				m.View.Address, m.View.ConfigEpoch = ep(1), 0 // its sentinel restarted with the old view
			}), 2, func(m *Member) { m.View.ConfigEpoch = 2 }), 3, func(m *Member) { m.View.ConfigEpoch = 2 }),
			staleSince: map[string]time.Time{"cache-1": now.Add(-time.Minute)},
			wantMaster: "cache-2", wantSource: SourceSentinels,
			wantActions: []string{"ReplicaOf cache-1 -> 10.77.0.12:6379", "Remonitor cache-1 -> 10.77.0.12:6379"},
		},
		{
			name: "right after +switch-master only the leader knows: its newer epoch wins, the others get time to converge",
			members: with(with(healthy(1), 2, func(m *Member) {
				m.View.Address, m.View.ConfigEpoch = ep(2), 2 // the leader
			}), 2, func(m *Member) { m.Repl = redisadmin.Replication{Role: "master", Offset: 6000, ConnectedReplicas: 1} }),
			staleSince: map[string]time.Time{"cache-1": now.Add(-time.Second), "cache-3": now.Add(-time.Second)},
			wantMaster: "cache-2", wantSource: SourceSentinels,
			// cache-1 (the old master) is unreachable in reality; here it
			// still answers as master, so it is demoted; cache-3 follows.
			wantActions: []string{"ReplicaOf cache-1 -> 10.77.0.12:6379", "ReplicaOf cache-3 -> 10.77.0.12:6379"},
		},
		{
			name: "replicas split between masters",
			members: with(with(healthy(1), 2, func(m *Member) {
				m.Repl = redisadmin.Replication{Role: "master", Offset: 10, ConnectedReplicas: 1}
			}), 3, func(m *Member) { m.Repl.Master = ep(2) }),
			wantMaster: "cache-1", wantSource: SourceSentinels,
			wantActions: []string{"ReplicaOf cache-2 -> 10.77.0.11:6379", "ReplicaOf cache-3 -> 10.77.0.11:6379"},
		},
		{
			name:       "no master at all and no sentinel: the replicas' master is kept",
			previous:   "cache-1",
			wantMaster: "cache-1", wantSource: SourceRedis,
			members: []Member{
				{Name: "cache-1", Redis: ep(1), Running: true, RedisErr: errDown, SentinelErr: errDown, Probe: &Probe{Configured: true}},
				with(healthy(1), 2, func(m *Member) { m.SentinelErr, m.Probe = errDown, &Probe{Configured: true, RedisActive: true} })[1],
				with(healthy(1), 3, func(m *Member) { m.SentinelErr, m.Probe = errDown, &Probe{Configured: true, RedisActive: true} })[2],
			},
			// The master's data is older than nothing: replicas hold data,
			// but no sentinel can promote them, so the master restarts.
			wantActions: []string{"StartRedis cache-1", "StartSentinel cache-1", "StartSentinel cache-2", "StartSentinel cache-3"},
		},
		{
			name: "sentinel on a wrong address is re-pointed with REMOVE + MONITOR once the grace is over",
			members: with(healthy(1), 3, func(m *Member) {
				m.View.Address = endpoint.Endpoint{Host: "10.77.0.99", Port: 6379}
			}),
			staleSince: map[string]time.Time{"cache-3": now.Add(-ConvergeGrace)},
			wantMaster: "cache-1", wantSource: SourceSentinels,
			wantActions: []string{"Remonitor cache-3 -> 10.77.0.11:6379"},
		},
		{
			name: "sentinel on another member's address within the grace: left to converge",
			members: with(healthy(1), 3, func(m *Member) {
				m.View.Address = ep(2)
			}),
			staleSince: map[string]time.Time{"cache-3": now.Add(-time.Second)},
			wantMaster: "cache-1", wantSource: SourceSentinels,
		},
		{
			name: "a partitioned old master still writable while the majority failed over: the newer epoch wins, the old master is demoted",
			members: with(with(healthy(1), 2, func(m *Member) {
				m.View.Address, m.View.ConfigEpoch = ep(2), 7
				m.Repl = redisadmin.Replication{Role: "master", Offset: 6000}
			}), 3, func(m *Member) { m.Repl.Master = ep(2) }),
			wantMaster: "cache-2", wantSource: SourceSentinels,
			wantActions: []string{"ReplicaOf cache-1 -> 10.77.0.12:6379"},
		},
		{
			name:       "sentinel that monitors nothing gets MONITOR",
			members:    with(healthy(1), 2, func(m *Member) { m.SentinelErr = fmt.Errorf("x: %w", redisadmin.ErrNoSuchMaster) }),
			wantMaster: "cache-1", wantSource: SourceSentinels,
			wantActions: []string{"Monitor cache-2 -> 10.77.0.11:6379"},
		},
		{
			name:       "missing sentinel (process stopped) is started",
			members:    with(healthy(1), 2, func(m *Member) { m.SentinelErr, m.Probe = errDown, sentinelStopped }),
			wantMaster: "cache-1", wantSource: SourceSentinels,
			wantActions: []string{"StartSentinel cache-2"},
		},
		{
			name:       "missing member (container gone): nothing to do for it here",
			members:    with(healthy(1), 3, func(m *Member) { m.Running, m.RedisErr, m.SentinelErr = false, errDown, errDown }),
			wantMaster: "cache-1", wantSource: SourceSentinels,
		},
		{
			name: "rebuilt replica: configured as a replica of the current master",
			members: with(healthy(1), 2, func(m *Member) {
				m.RedisErr, m.SentinelErr, m.Probe = errDown, errDown, unconfigured
			}),
			wantMaster: "cache-1", wantSource: SourceSentinels,
			wantActions: []string{"Configure cache-2 -> 10.77.0.11:6379"},
		},
		{
			name: "rebuilt master while replicas hold data: not configured as an empty master",
			members: with(healthy(1), 1, func(m *Member) {
				m.RedisErr, m.SentinelErr, m.Probe = errDown, errDown, unconfigured
			}),
			wantMaster: "cache-1", wantSource: SourceSentinels,
		},
		{
			name:       "master's redis-server stopped while replicas hold data: Sentinel promotes, not a restart",
			members:    with(healthy(1), 1, func(m *Member) { m.RedisErr, m.Probe = errDown, redisStopped }),
			wantMaster: "cache-1", wantSource: SourceSentinels,
		},
		{
			name:       "replica's redis-server stopped: restarted as a replica",
			members:    with(healthy(1), 3, func(m *Member) { m.RedisErr, m.Probe = errDown, redisStopped }),
			wantMaster: "cache-1", wantSource: SourceSentinels,
			wantActions: []string{"StartRedis cache-3 -> 10.77.0.11:6379"},
		},
		{
			name: "failover in progress: no healing action even with a second master",
			members: with(with(healthy(1), 1, func(m *Member) {
				m.View.Flags = []string{"master", "failover_in_progress"}
			}), 3, func(m *Member) { m.Repl = redisadmin.Replication{Role: "master"} }),
			wantMaster: "cache-1", wantSource: SourceSentinels, wantFailover: true,
		},
		{
			name: "partition: the leader reports the master it is leaving with the new epoch; the switched sentinel names the new one",
			members: with(with(with(healthy(1), 1, func(m *Member) {
				m.View.ConfigEpoch = 0 // isolated with the old master
			}), 2, func(m *Member) {
				m.View.Flags, m.View.ConfigEpoch = []string{"master", "s_down", "o_down", "failover_in_progress"}, 1
			}), 3, func(m *Member) {
				m.View.Address, m.View.ConfigEpoch = ep(3), 1
				m.Repl = redisadmin.Replication{Role: "master", Offset: 6000}
			}),
			wantMaster: "cache-3", wantSource: SourceSentinels, wantFailover: true,
		},
		{
			name: "master objectively down: failover imminent, nothing done",
			members: with(with(healthy(1), 2, func(m *Member) { m.View.Flags = []string{"master", "s_down", "o_down"} }),
				3, func(m *Member) { m.Repl.Master = ep(2) }),
			wantMaster: "cache-1", wantSource: SourceSentinels, wantFailover: true,
		},
		{
			name: "whole formation restarted during a failover attempt: the master starts first",
			members: []Member{
				with(healthy(1), 1, func(m *Member) {
					m.RedisErr, m.Probe = errDown, redisStopped
					m.View.Flags = []string{"master", "s_down", "o_down", "failover_in_progress"}
				})[0],
				with(healthy(1), 2, func(m *Member) { m.RedisErr, m.Probe = errDown, redisStopped })[1],
				with(healthy(1), 3, func(m *Member) { m.RedisErr, m.Probe = errDown, redisStopped })[2],
			},
			wantMaster: "cache-1", wantSource: SourceSentinels, wantFailover: true,
			wantActions: []string{"StartRedis cache-1"},
		},
		{
			name: "quorum and down-after changed in the spec: SENTINEL SET on every sentinel",
			members: func() []Member {
				ms := healthy(1)
				for i := range ms {
					ms[i].View.Quorum, ms[i].View.DownAfterMs = 3, 3000
				}
				return ms
			}(),
			wantMaster: "cache-1", wantSource: SourceSentinels,
			wantActions: []string{
				"SentinelSet cache-1 down-after-milliseconds=5000,quorum=2",
				"SentinelSet cache-2 down-after-milliseconds=5000,quorum=2",
				"SentinelSet cache-3 down-after-milliseconds=5000,quorum=2",
			},
		},
		{
			name:       "stale peer counted and the set is whole: one RESET",
			members:    with(with(healthy(1), 2, func(m *Member) { m.View.NumOtherSentinels = 3 }), 3, func(m *Member) { m.View.NumReplicas = 3 }),
			wantMaster: "cache-1", wantSource: SourceSentinels,
			wantActions: []string{"Reset cache-2"},
		},
		{
			name:       "stale peer while a scaled-down member is still being removed: no RESET yet",
			members:    with(healthy(1), 2, func(m *Member) { m.View.NumOtherSentinels = 4 }),
			departing:  2,
			wantMaster: "cache-1", wantSource: SourceSentinels,
		},
		{
			name:       "stale peer but the sentinel was reset recently: no RESET loop",
			members:    with(healthy(1), 2, func(m *Member) { m.View.NumOtherSentinels = 3 }),
			lastReset:  map[string]time.Time{"cache-2": now.Add(-time.Minute)},
			wantMaster: "cache-1", wantSource: SourceSentinels,
		},
		{
			name:        "stale peer, the sentinel was reset recently, but a member was rebuilt since: its entries are new, one RESET",
			members:     with(healthy(1), 2, func(m *Member) { m.View.NumReplicas = 3 }),
			lastReset:   map[string]time.Time{"cache-2": now.Add(-time.Minute)},
			lastRebuild: now.Add(-30 * time.Second),
			wantMaster:  "cache-1", wantSource: SourceSentinels,
			wantActions: []string{"Reset cache-2"},
		},
		{
			name:        "stale peer, a member rebuilt before the recent reset: no RESET loop",
			members:     with(healthy(1), 2, func(m *Member) { m.View.NumReplicas = 3 }),
			lastReset:   map[string]time.Time{"cache-2": now.Add(-time.Minute)},
			lastRebuild: now.Add(-2 * time.Minute),
			wantMaster:  "cache-1", wantSource: SourceSentinels,
		},
		{
			name:       "the master name changed: every sentinel drops the old name, then each monitors the master under the new one",
			members:    renamed(healthy(1), 1, 2, 3),
			wantMaster: "cache-1", wantSource: SourceSentinels,
			wantActions: []string{"Unmonitor cache-1", "Unmonitor cache-2", "Unmonitor cache-3",
				"Monitor cache-1 -> 10.77.0.11:6379", "Monitor cache-2 -> 10.77.0.11:6379", "Monitor cache-3 -> 10.77.0.11:6379"},
		},
		{
			name: "a rename interrupted after one sentinel: it monitors the master afresh with the others, which are renamed, no RESET",
			members: with(renamed(healthy(1), 2, 3), 1, func(m *Member) {
				m.View, m.SentinelErr = redisadmin.MasterState{}, redisadmin.ErrNoSuchMaster
			}),
			wantMaster: "cache-1", wantSource: SourceSentinels,
			wantActions: []string{"Unmonitor cache-2", "Unmonitor cache-3",
				"Monitor cache-2 -> 10.77.0.11:6379", "Monitor cache-3 -> 10.77.0.11:6379", "Monitor cache-1 -> 10.77.0.11:6379"},
		},
		{
			name: "the master name changed while the sentinels fail over under the old one: nothing until it is done",
			members: renamed(with(healthy(1), 2, func(m *Member) {
				m.View.Flags = []string{"master", "failover_in_progress"}
			}), 1, 2, 3),
			wantMaster: "cache-1", wantSource: SourceSentinels, wantFailover: true,
		},
		{
			name: "the master name changed and the sentinels disagree (no majority): nothing is imposed",
			members: renamed(with(with(healthy(1), 2, func(m *Member) { m.View.Address = ep(2) }), 3, func(m *Member) {
				m.View.Address, m.RedisErr, m.Probe = ep(3), errDown, &Probe{Configured: true, RedisActive: true, SentinelActive: true}
			}), 1, 2, 3),
			wantMaster: "cache-1", wantSource: SourceSentinelMinority,
		},
		{
			name: "stale peer but a replica is not linked: no RESET",
			members: with(with(healthy(1), 2, func(m *Member) { m.View.NumOtherSentinels = 3 }),
				3, func(m *Member) { m.Repl.LinkUp = false }),
			wantMaster: "cache-1", wantSource: SourceSentinels,
		},
		{
			name: "only a minority of sentinels answer: their newest view is used but not enforced",
			members: with(with(healthy(2), 1, func(m *Member) {
				m.SentinelErr, m.Probe = errDown, &Probe{Configured: true, RedisActive: true, SentinelActive: true}
			}),
				2, func(m *Member) {
					m.SentinelErr, m.Probe = errDown, &Probe{Configured: true, RedisActive: true, SentinelActive: true}
				}),
			wantMaster: "cache-2", wantSource: SourceSentinelMinority,
		},
		{
			name: "new formation, a member still without an address: nothing is configured yet",
			members: []Member{
				{Name: "cache-1", Redis: ep(1), Running: true, RedisErr: errDown, SentinelErr: errDown, Probe: unconfigured},
				{Name: "cache-2"},
				{Name: "cache-3", Redis: ep(3), Running: true, RedisErr: errDown, SentinelErr: errDown, Probe: unconfigured},
			},
			awaitMembers: true,
			wantSource:   SourceNone,
		},
		{
			name: "new formation whose member never came up: bootstrapped without it once the wait is over",
			members: []Member{
				{Name: "cache-1"},
				{Name: "cache-2", Redis: ep(2), Running: true, RedisErr: errDown, SentinelErr: errDown, Probe: unconfigured},
				{Name: "cache-3", Redis: ep(3), Running: true, RedisErr: errDown, SentinelErr: errDown, Probe: unconfigured},
			},
			wantMaster: "cache-2", wantSource: SourceBootstrap,
			wantActions: []string{"Configure cache-2", "Configure cache-3 -> 10.77.0.12:6379 down-after-milliseconds=30000"},
		},
		{
			name:       "no container runs",
			members:    []Member{{Name: "cache-1"}, {Name: "cache-2"}, {Name: "cache-3"}},
			wantSource: SourceNone,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := Input{Members: tc.members, Desired: desired, PreviousMaster: tc.previous, LastReset: tc.lastReset, LastRebuild: tc.lastRebuild, StaleSince: tc.staleSince, Departing: tc.departing, Now: now}
			if tc.awaitMembers {
				in.AwaitMembersUntil = now.Add(time.Second)
			}
			p := Decide(in)
			if p.MasterMember != tc.wantMaster || p.Source != tc.wantSource {
				t.Errorf("master %q from %s, want %q from %s", p.MasterMember, p.Source, tc.wantMaster, tc.wantSource)
			}
			if p.FailoverInProgress != tc.wantFailover {
				t.Errorf("failover in progress %v, want %v", p.FailoverInProgress, tc.wantFailover)
			}
			if got := act(p); !slices.Equal(got, tc.wantActions) {
				t.Errorf("actions\n got %q\nwant %q", got, tc.wantActions)
			}
			for _, a := range p.Actions {
				if a.Reason == "" {
					t.Errorf("%s %s has no reason", a.Kind, a.Member)
				}
			}
		})
	}
}

// TestDecideIsDeterministic guards the map iterations in the vote count.
func TestDecideIsDeterministic(t *testing.T) {
	ms := with(with(healthy(1), 2, func(m *Member) { m.View.Address = ep(2) }), 3, func(m *Member) { m.View.Address = ep(3) })
	first := Decide(Input{Members: ms, Desired: desired, Now: now})
	for range 50 {
		if p := Decide(Input{Members: ms, Desired: desired, Now: now}); p.MasterMember != first.MasterMember || !slices.Equal(act(p), act(first)) {
			t.Fatalf("Decide is not deterministic: %v vs %v", act(p), act(first))
		}
	}
}
