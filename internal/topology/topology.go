// Package topology decides, from what the operator observed of a formation's
// redis-servers and sentinels, which member is the master and what must be
// done so that exactly one master exists, every replica follows it and every
// sentinel monitors it with the desired settings.
//
// Sentinel's majority view is the truth. The package is pure: the controller
// observes, calls Decide and executes the returned actions.
package topology

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/incusops/redis-sentinel-operator/internal/endpoint"
	"github.com/incusops/redis-sentinel-operator/internal/redisadmin"
)

// ConvergeGrace is how long a sentinel may lag behind the newest master
// config before it is re-pointed with REMOVE + MONITOR: sentinels normally
// learn a new config from each other's hello messages within seconds, and a
// REMOVE makes one forget its replicas and peers.
const ConvergeGrace = 20 * time.Second

// ResetCooldown is the least time between two SENTINEL RESETs of one
// sentinel: a reset makes a sentinel forget its replicas and peers for about
// ten seconds, so resetting in a loop can leave a formation unable to fail
// over.
const ResetCooldown = 3 * time.Minute

// AwaitMasterDownAfterMs is the down-after-milliseconds a replica's sentinel
// is configured with while the master's member is not configured yet (a new
// formation whose master container starts late, or whose configuration an
// operator restart interrupted): with the spec's few seconds, the replicas'
// sentinels would agree the master is down before it ever ran and promote an
// empty replica. The spec's value is set once the master is configured; a
// master that never comes up is still failed over, after this long.
const AwaitMasterDownAfterMs = 30_000

// Desired is the part of the spec the decisions depend on.
type Desired struct {
	MasterName        string
	Members           int
	Quorum            int
	DownAfterMs       int
	FailoverTimeoutMs int
	ParallelSyncs     int
}

// Probe is what the operator found inside a member's container when its
// redis-server or sentinel did not answer.
type Probe struct {
	// Configured: the operator has written the member's configuration.
	Configured bool
	// RedisActive and SentinelActive: the systemd units are active.
	RedisActive, SentinelActive bool
}

// Member is one member's observation.
type Member struct {
	Name string
	// Redis and Sentinel are the member's endpoints; Host is "" when the
	// member has no address yet.
	Redis, Sentinel endpoint.Endpoint
	// Running: the container runs and has its address.
	Running bool
	// Home is the member's redis-server endpoint at its own address, known
	// also while its container is stopped (the address is pinned); zero
	// before it ever had one. Only a member's Home is ever followed.
	Home endpoint.Endpoint

	// Repl is valid when RedisErr is nil.
	Repl     redisadmin.Replication
	RedisErr error

	// View is valid when SentinelErr is nil; SentinelErr wraps
	// redisadmin.ErrNoSuchMaster when the sentinel does not monitor the
	// master name.
	View        redisadmin.MasterState
	SentinelErr error
	// OtherNames are the names the sentinel monitors instead of the
	// desired master name (spec.masterName changed); View is then its view
	// under the one with the newest config epoch.
	OtherNames []string

	// Probe is set when the redis-server or the sentinel did not answer.
	Probe *Probe
}

func (m Member) redisUp() bool    { return m.Running && m.RedisErr == nil }
func (m Member) sentinelUp() bool { return m.Running && m.SentinelErr == nil }
func (m Member) monitoring() bool { return m.sentinelUp() }
func (m Member) notMonitoring() bool {
	return m.Running && errors.Is(m.SentinelErr, redisadmin.ErrNoSuchMaster)
}

// configured is true unless a probe found the member unconfigured.
func (m Member) configured() bool { return m.Probe == nil || m.Probe.Configured }

// Input is everything Decide looks at.
type Input struct {
	// Members in member order (1..N).
	Members []Member
	Desired Desired
	// PreviousMaster is the master member recorded in status, if any.
	PreviousMaster string
	// LastReset is when each sentinel (by member name) was last reset.
	LastReset map[string]time.Time
	// Departing counts members being removed (a scale-down): while any
	// still runs, a reset sentinel would only rediscover it.
	Departing int
	// DepartingHomes are those members' endpoints: still the formation's,
	// so the sentinels may name one of them master until a planned
	// failover moves the role away.
	DepartingHomes []endpoint.Endpoint
	// StaleSince is since when each sentinel (by member name) has been
	// monitoring another address than the master (Plan.Stale of earlier
	// passes).
	StaleSince map[string]time.Time
	// LastRebuild is when the newest member container was created. A
	// rebuilt member (a rollout, a port change) leaves entries the
	// sentinels must forget, so it lifts the reset cooldown of the
	// sentinels reset before it.
	LastRebuild time.Time
	// AwaitMembersUntil: until then a new formation is not bootstrapped
	// while a member has no address, so that every member is configured
	// knowing all the others (Sentinel otherwise learns a replica only from
	// its next INFO of the master, up to 10 s later).
	AwaitMembersUntil time.Time
	Now               time.Time
}

// Source says where the master was learned from.
type Source string

const (
	// SourceSentinels: a majority of all sentinels agree.
	SourceSentinels Source = "sentinels"
	// SourceSentinelMinority: some sentinels answered but no majority
	// agrees; the view with the newest config epoch is used.
	SourceSentinelMinority Source = "sentinel-minority"
	// SourceRedis: no sentinel monitors the master; redis-servers tell.
	SourceRedis Source = "redis"
	// SourcePrevious: nothing answered; the master recorded in status.
	SourcePrevious Source = "previous"
	// SourceBootstrap: a new formation; its first running member.
	SourceBootstrap Source = "bootstrap"
	// SourceNone: no member runs, or a new formation awaits its members.
	SourceNone Source = "none"
)

// Kind is an action's kind.
type Kind string

const (
	// Configure writes a new member's redis.conf and sentinel.conf and
	// starts both; Target is its master (zero: it is the master).
	Configure Kind = "Configure"
	// StartRedis re-renders redis.conf as a replica of Target (zero: as
	// master) and starts redis-server, which never starts on its own so
	// that a restarted member cannot serve stale or empty data as master.
	StartRedis Kind = "StartRedis"
	// StartSentinel starts a configured member's stopped sentinel.
	StartSentinel Kind = "StartSentinel"
	// ReplicaOf points a running redis-server at Target (zero: promote).
	ReplicaOf Kind = "ReplicaOf"
	// Monitor makes a sentinel that monitors nothing monitor Target.
	Monitor Kind = "Monitor"
	// Remonitor fixes a sentinel monitoring a wrong address: REMOVE, then
	// MONITOR Target.
	Remonitor Kind = "Remonitor"
	// SentinelSet applies Settings with SENTINEL SET.
	SentinelSet Kind = "SentinelSet"
	// Reset runs SENTINEL RESET so a sentinel forgets departed peers.
	Reset Kind = "Reset"
	// Unmonitor removes the names a sentinel monitors instead of the
	// desired one (Member.OtherNames); a Monitor under the desired name
	// follows in the same plan.
	Unmonitor Kind = "Unmonitor"
)

// Action is one step of a plan.
type Action struct {
	Kind   Kind
	Member string
	Target endpoint.Endpoint
	// Settings are the sentinel settings SentinelSet applies, or those a
	// Configure renders instead of the spec's.
	Settings map[string]string
	Reason   string
}

// Plan is Decide's answer.
type Plan struct {
	// Master is the master's endpoint; zero when none can be named.
	Master endpoint.Endpoint
	// MasterMember is the member at Master, "" if no member has it.
	MasterMember string
	Source       Source
	// Authoritative: the master may be enforced (demoting other masters,
	// re-pointing sentinels). False for a sentinel minority view.
	Authoritative bool
	// ConfigEpoch is the newest config epoch the sentinels report for
	// Master (Source sentinels or sentinel-minority); 0 otherwise.
	ConfigEpoch int64
	// FailoverInProgress: a sentinel is failing over (or the master is
	// objectively down); no healing action is taken meanwhile.
	FailoverInProgress bool
	// Stale lists the sentinels monitoring another address than Master.
	Stale []string
	// Untrusted are the sentinels (by member name) that monitor an address
	// that is no member's: their view is ignored and they are re-pointed
	// at Master at once.
	Untrusted map[string]endpoint.Endpoint
	Actions   []Action
}

// Decide computes the plan.
func Decide(in Input) Plan {
	in, untrusted := setAsideUntrusted(in)
	p := findMaster(in)
	p.Untrusted = untrusted
	p.FailoverInProgress = failoverInProgress(in, p.Master)
	for _, m := range in.Members {
		if m.monitoring() && !p.Master.IsZero() && m.View.Address != p.Master {
			p.Stale = append(p.Stale, m.Name)
		}
	}
	if p.Source == SourceNone {
		return p
	}
	if p.FailoverInProgress {
		// Sentinel is promoting a replica: acting now could fight it.
		// One exception: no redis-server runs at all, so the failover
		// cannot succeed and only starting the master brings data back.
		if !anyRedisUp(in) {
			p.Actions = append(p.Actions, startMasterWhenNothingRuns(in, p)...)
		}
		return p
	}
	for _, m := range in.Members {
		p.Actions = append(p.Actions, redisActions(in, p, m)...)
	}
	p.Actions = append(p.Actions, renameActions(in, p)...)
	for _, m := range in.Members {
		p.Actions = append(p.Actions, sentinelActions(in, p, m)...)
	}
	if a, ok := resetAction(in, p); ok {
		p.Actions = append(p.Actions, a)
	}
	return p
}

// setAsideUntrusted drops the views of sentinels that monitor an address
// that is no member's: whoever told them to (a client holding a sentinel
// password, a stale peer) must not make the members replicate from a host
// of its choosing. Such a sentinel is treated as monitoring nothing, so it
// is re-pointed at the master.
func setAsideUntrusted(in Input) (Input, map[string]endpoint.Endpoint) {
	var untrusted map[string]endpoint.Endpoint
	members := slices.Clone(in.Members)
	for i, m := range members {
		if !m.monitoring() || isHome(in, m.View.Address) {
			continue
		}
		if untrusted == nil {
			untrusted = map[string]endpoint.Endpoint{}
		}
		untrusted[m.Name] = m.View.Address
		members[i].View = redisadmin.MasterState{}
		members[i].SentinelErr = errUntrusted
	}
	in.Members = members
	return in, untrusted
}

// errUntrusted marks a sentinel whose view was set aside.
var errUntrusted = fmt.Errorf("monitors an address that is no member's: %w", redisadmin.ErrNoSuchMaster)

func isHome(in Input, e endpoint.Endpoint) bool {
	return slices.Contains(in.DepartingHomes, e) || slices.ContainsFunc(in.Members, func(m Member) bool { return !m.Home.IsZero() && m.Home == e })
}

func findMaster(in Input) Plan {
	if p, ok := masterFromSentinels(in); ok {
		return p
	}
	if p, ok := masterFromRedis(in); ok {
		return p
	}
	if m, ok := memberNamed(in, in.PreviousMaster); ok && m.Running {
		return Plan{Master: m.Redis, MasterMember: m.Name, Source: SourcePrevious, Authoritative: true}
	}
	if in.Now.Before(in.AwaitMembersUntil) && slices.ContainsFunc(in.Members, func(m Member) bool { return !m.Running }) {
		return Plan{Source: SourceNone}
	}
	for _, m := range in.Members {
		if m.Running {
			return Plan{Master: m.Redis, MasterMember: m.Name, Source: SourceBootstrap, Authoritative: true}
		}
	}
	return Plan{Source: SourceNone}
}

// masterFromSentinels takes the view with the highest config epoch. A
// sentinel only advances a master's config epoch by winning a failover
// election with a majority, so the newest epoch is Sentinel's own truth even
// before the other sentinels hear of it (they converge within seconds). It
// is authoritative when it is strictly newer than the other views or a
// majority of the members' sentinels share it.
func masterFromSentinels(in Input) (Plan, bool) {
	votes := map[endpoint.Endpoint]int{}
	epochs := map[endpoint.Endpoint]int64{}
	// A sentinel that is failing over reports the master it is leaving
	// (with the new epoch already): it votes only when no other does.
	leaving := func(m Member) bool { return m.View.FailoverInProgress() }
	others := slices.ContainsFunc(in.Members, func(m Member) bool { return m.monitoring() && !leaving(m) })
	for _, m := range in.Members {
		if !m.monitoring() || (others && leaving(m)) {
			continue
		}
		votes[m.View.Address]++
		epochs[m.View.Address] = max(epochs[m.View.Address], m.View.ConfigEpoch)
	}
	if len(votes) == 0 {
		return Plan{}, false
	}
	// Deterministic: newest epoch, then most votes, then address order.
	candidates := slices.SortedFunc(maps.Keys(votes), func(a, b endpoint.Endpoint) int {
		return cmp.Or(cmp.Compare(epochs[b], epochs[a]), cmp.Compare(votes[b], votes[a]), endpoint.Compare(a, b))
	})
	best := candidates[0]
	// Newer than a view that disagrees: a lone reachable sentinel cannot
	// know what the unreachable ones decided since.
	newer := len(candidates) > 1 && epochs[best] > epochs[candidates[1]]
	majority := votes[best]*2 > max(in.Desired.Members, len(in.Members))
	p := Plan{Master: best, MasterMember: memberAt(in, best), Source: SourceSentinels, Authoritative: true, ConfigEpoch: epochs[best]}
	if !majority && !newer {
		p.Source, p.Authoritative = SourceSentinelMinority, false
	}
	return p, true
}

func masterFromRedis(in Input) (Plan, bool) {
	var masters []Member
	for _, m := range in.Members {
		if m.redisUp() && m.Repl.IsMaster() {
			masters = append(masters, m)
		}
	}
	if len(masters) > 0 {
		// Several masters and no sentinel to ask: keep the one replicas
		// follow, then the one with the most data.
		best := slices.MaxFunc(masters, func(a, b Member) int {
			if a.Repl.ConnectedReplicas != b.Repl.ConnectedReplicas {
				return a.Repl.ConnectedReplicas - b.Repl.ConnectedReplicas
			}
			if a.Repl.Offset != b.Repl.Offset {
				return cmp.Compare(a.Repl.Offset, b.Repl.Offset)
			}
			return endpoint.Compare(b.Redis, a.Redis)
		})
		return Plan{Master: best.Redis, MasterMember: best.Name, Source: SourceRedis, Authoritative: true}, true
	}
	// Only replicas answer: the master they follow, if it is a member.
	for _, m := range in.Members {
		if m.redisUp() && memberAt(in, m.Repl.Master) != "" {
			return Plan{Master: m.Repl.Master, MasterMember: memberAt(in, m.Repl.Master), Source: SourceRedis, Authoritative: true}, true
		}
	}
	return Plan{}, false
}

func failoverInProgress(in Input, master endpoint.Endpoint) bool {
	for _, m := range in.Members {
		if !m.monitoring() {
			continue
		}
		if m.View.FailoverInProgress() || (m.View.Address == master && m.View.HasFlag("o_down")) {
			return true
		}
	}
	return false
}

func anyRedisUp(in Input) bool {
	return slices.ContainsFunc(in.Members, Member.redisUp)
}

func startMasterWhenNothingRuns(in Input, p Plan) []Action {
	m, ok := memberNamed(in, p.MasterMember)
	if !ok || !m.Running || m.Probe == nil || !m.Probe.Configured || m.Probe.RedisActive {
		return nil
	}
	return []Action{{Kind: StartRedis, Member: m.Name, Reason: "no redis-server runs; starting the master first"}}
}

// redisActions keeps one member's redis-server running and following the
// master.
func redisActions(in Input, p Plan, m Member) []Action {
	if !m.Running {
		return nil
	}
	isMaster := m.Redis == p.Master
	target := p.Master
	if isMaster {
		target = endpoint.Endpoint{}
	}
	switch {
	case !m.configured():
		if isMaster && replicaHoldsData(in, p, m) {
			return nil // a rebuilt master is empty: Sentinel must promote a replica first
		}
		a := Action{Kind: Configure, Member: m.Name, Target: target, Reason: configureReason(isMaster, p.Source)}
		if !isMaster && awaitingMaster(in, p) && in.Desired.DownAfterMs < AwaitMasterDownAfterMs {
			a.Settings = map[string]string{"down-after-milliseconds": strconv.Itoa(AwaitMasterDownAfterMs)}
			a.Reason += "; its sentinel gives the master, not configured yet, " + strconv.Itoa(AwaitMasterDownAfterMs/1000) + " s to start"
		}
		return []Action{a}
	case m.RedisErr != nil:
		if m.Probe == nil || m.Probe.RedisActive {
			return nil // running but not answering (loading, or network): wait
		}
		if isMaster && replicaHoldsData(in, p, m) {
			return nil // its data may be older than the replicas': Sentinel promotes one instead
		}
		return []Action{{Kind: StartRedis, Member: m.Name, Target: target, Reason: startReason(isMaster)}}
	case !p.Authoritative:
		return nil
	case isMaster && !m.Repl.IsMaster():
		return []Action{{Kind: ReplicaOf, Member: m.Name, Reason: "the sentinels' master reports itself a replica; promoting it"}}
	case !isMaster && m.Repl.IsMaster():
		return []Action{{Kind: ReplicaOf, Member: m.Name, Target: target, Reason: "a second master; demoting it to a replica of " + target.String()}}
	case !isMaster && m.Repl.Master != target:
		return []Action{{Kind: ReplicaOf, Member: m.Name, Target: target, Reason: "replica follows " + m.Repl.Master.String() + " instead of the master " + target.String()}}
	}
	return nil
}

// replicaHoldsData reports whether, while the sentinels' master is down,
// another member runs a replica that has replicated data Sentinel can
// promote. Restarting (or re-creating) the master then would let it serve,
// and replicas resync from, older or empty data: the data-loss bug of other
// operators.
func replicaHoldsData(in Input, p Plan, master Member) bool {
	if p.Source != SourceSentinels {
		return false
	}
	return slices.ContainsFunc(in.Members, func(o Member) bool {
		return o.Name != master.Name && o.redisUp() && !o.Repl.IsMaster() && o.Repl.Offset > 0
	})
}

// awaitingMaster: the plan's master is a member whose container runs
// unconfigured, so its redis-server has never started (see
// AwaitMasterDownAfterMs).
func awaitingMaster(in Input, p Plan) bool {
	m, ok := memberNamed(in, p.MasterMember)
	return ok && !m.configured()
}

func configureReason(isMaster bool, source Source) string {
	if isMaster {
		return "new member; configured as the master (" + string(source) + ")"
	}
	return "new member; configured as a replica of the master"
}

func startReason(isMaster bool) string {
	if isMaster {
		return "redis-server is stopped on the master and no replica holds data; starting it as master"
	}
	return "redis-server is stopped; starting it as a replica of the master"
}

// renameActions move every sentinel that monitors the master under another
// name (spec.masterName changed) to the desired name in one plan: first
// the other names are removed from every such sentinel, then each monitors
// the master under the desired name. No sentinel ever monitors the master
// under two names (it would fail it over twice), and once the removals
// passed a majority no failover can start under the old name: the
// sentinels still monitoring it lack the quorum. No plan is made while a
// failover runs (Decide stops before), nor unless Sentinel's majority (or
// newest epoch) names the master: the sentinels forget everything else they
// knew of it.
func renameActions(in Input, p Plan) []Action {
	if !p.Authoritative || p.Master.IsZero() {
		return nil
	}
	var removals, monitors []Action
	for _, m := range in.Members {
		if !m.Running || !m.configured() || len(m.OtherNames) == 0 {
			continue
		}
		removals = append(removals, Action{Kind: Unmonitor, Member: m.Name, Reason: "sentinel monitors the master as " + strings.Join(m.OtherNames, ", ") + ", not as " + in.Desired.MasterName})
		monitors = append(monitors, Action{Kind: Monitor, Member: m.Name, Target: p.Master, Reason: "the master name is now " + in.Desired.MasterName})
	}
	return append(removals, monitors...)
}

// sentinelActions keeps one member's sentinel running, monitoring the
// master with the desired settings.
func sentinelActions(in Input, p Plan, m Member) []Action {
	switch {
	case !m.Running || !m.configured():
		return nil
	case len(m.OtherNames) > 0:
		return nil // renameActions
	case errors.Is(m.SentinelErr, errUntrusted):
		if !masterConfirmed(in, p) {
			return nil
		}
		return []Action{{Kind: Remonitor, Member: m.Name, Target: p.Master, Reason: "sentinel monitored " + p.Untrusted[m.Name].String() + ", which is no member's address; re-pointing it at the master " + p.Master.String()}}
	case m.notMonitoring():
		if p.Master.IsZero() {
			return nil
		}
		return []Action{{Kind: Monitor, Member: m.Name, Target: p.Master, Reason: "sentinel does not monitor " + in.Desired.MasterName}}
	case m.SentinelErr != nil:
		if m.Probe != nil && !m.Probe.SentinelActive {
			return []Action{{Kind: StartSentinel, Member: m.Name, Reason: "redis-sentinel is stopped"}}
		}
		return nil
	case m.View.Address != p.Master:
		since, known := in.StaleSince[m.Name]
		if !p.Authoritative || m.View.ConfigEpoch > newestEpochFor(in, p.Master) || !known || in.Now.Sub(since) < ConvergeGrace {
			return nil // give Sentinel's own gossip time to converge
		}
		return []Action{{Kind: Remonitor, Member: m.Name, Target: p.Master, Reason: "sentinel has monitored " + m.View.Address.String() +
			" instead of the master " + p.Master.String() + " since " + since.UTC().Format(time.RFC3339)}}
	}
	drift := settingsDrift(in.Desired, m.View)
	if awaitingMaster(in, p) {
		delete(drift, "down-after-milliseconds") // see AwaitMasterDownAfterMs
	}
	if len(drift) > 0 {
		return []Action{{Kind: SentinelSet, Member: m.Name, Settings: drift, Reason: "sentinel settings differ from the spec"}}
	}
	return nil
}

// masterConfirmed: the plan's master may be imposed on a sentinel that
// monitors an untrusted address, because the master is authoritative or its
// redis-server says it is a master.
func masterConfirmed(in Input, p Plan) bool {
	if p.Master.IsZero() {
		return false
	}
	m, ok := memberNamed(in, p.MasterMember)
	return p.Authoritative || (ok && m.redisUp() && m.Repl.IsMaster())
}

func newestEpochFor(in Input, master endpoint.Endpoint) int64 {
	var epoch int64
	for _, m := range in.Members {
		if m.monitoring() && m.View.Address == master {
			epoch = max(epoch, m.View.ConfigEpoch)
		}
	}
	return epoch
}

func settingsDrift(d Desired, v redisadmin.MasterState) map[string]string {
	drift := map[string]string{}
	check := func(key string, want, got int) {
		if want != got {
			drift[key] = strconv.Itoa(want)
		}
	}
	check("quorum", d.Quorum, v.Quorum)
	check("down-after-milliseconds", d.DownAfterMs, v.DownAfterMs)
	check("failover-timeout", d.FailoverTimeoutMs, v.FailoverTimeoutMs)
	check("parallel-syncs", d.ParallelSyncs, v.ParallelSyncs)
	return drift
}

// resetAction resets one sentinel that counts more replicas or sentinels
// than exist, only when the set is whole and healthy: no member is still
// being removed, every sentinel monitors the master, the master runs and
// every replica is linked to it.
func resetAction(in Input, p Plan) (Action, bool) {
	if p.Source != SourceSentinels || len(in.Members) != in.Desired.Members || in.Departing > 0 {
		return Action{}, false
	}
	for _, m := range in.Members {
		if !m.monitoring() || len(m.OtherNames) > 0 || m.View.Address != p.Master || !m.redisUp() {
			return Action{}, false
		}
		if m.Redis == p.Master {
			if !m.Repl.IsMaster() {
				return Action{}, false
			}
		} else if m.Repl.IsMaster() || m.Repl.Master != p.Master || !m.Repl.LinkUp {
			return Action{}, false
		}
	}
	peers := in.Desired.Members - 1
	for _, m := range in.Members {
		if m.View.NumOtherSentinels <= peers && m.View.NumReplicas <= peers {
			continue
		}
		if last, ok := in.LastReset[m.Name]; ok && in.Now.Sub(last) < ResetCooldown && !in.LastRebuild.After(last) {
			continue
		}
		return Action{Kind: Reset, Member: m.Name, Reason: "sentinel counts " + strconv.Itoa(m.View.NumReplicas) +
			" replicas and " + strconv.Itoa(m.View.NumOtherSentinels) + " other sentinels; " + strconv.Itoa(peers) + " of each exist"}, true
	}
	return Action{}, false
}

func memberAt(in Input, e endpoint.Endpoint) string {
	if e.IsZero() {
		return ""
	}
	for _, m := range in.Members {
		if m.Redis == e {
			return m.Name
		}
	}
	return ""
}

func memberNamed(in Input, name string) (Member, bool) {
	for _, m := range in.Members {
		if name != "" && m.Name == name {
			return m, true
		}
	}
	return Member{}, false
}
