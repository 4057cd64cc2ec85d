package controllers

import (
	"fmt"
	"maps"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/internal/acl"
	"github.com/incusops/redis-sentinel-operator/internal/endpoint"
	"github.com/incusops/redis-sentinel-operator/internal/fingerprint"
	"github.com/incusops/redis-sentinel-operator/internal/incus"
	"github.com/incusops/redis-sentinel-operator/internal/topology"
)

// actionKind is what an action does.
type actionKind string

const (
	actAddFinalizer      actionKind = "AddFinalizer"
	actCreate            actionKind = "CreateInstance"
	actStart             actionKind = "StartInstance"
	actPin               actionKind = "PinAddress"
	actReplace           actionKind = "ReplaceMember"
	actRemove            actionKind = "RemoveMember"
	actTopology          actionKind = "Topology"
	actConfigSet         actionKind = "ApplySettings"
	actApplyCredentials  actionKind = "ApplyCredentials"
	actApplyBackendRules actionKind = "ApplyBackendRules"
	actWriteSecret       actionKind = "WriteOwnedSecret"
	actHoldWrites        actionKind = "HoldWrites"
	actReleaseWrites     actionKind = "ReleaseWrites"
	actSentinelFailover  actionKind = "SentinelFailover"
	actDemoteOldMaster   actionKind = "DemoteOldMaster"
	actWriteConnection   actionKind = "WriteConnection"
	actSetPriority       actionKind = "SetReplicaPriority"
	actIssueCertificates actionKind = "IssueCertificates"
	actApplyTLS          actionKind = "ApplyTLS"
	actRestartSentinel   actionKind = "RestartSentinel"
	actAbandonInstance   actionKind = "AbandonLostInstance"
	actDeleteAbandoned   actionKind = "DeleteAbandonedInstance"
)

// action is one step decided by a pass. Only the fields of its kind are set.
type action struct {
	kind   actionKind
	member string
	// instance is the member's Incus instance, for the Incus actions
	// (start, pin, replace, remove; a create's is spec.Name).
	instance string
	reason   string
	// target is a topology action's master, or the promoted member of a
	// demotion.
	target   endpoint.Endpoint
	topology topology.Action
	spec     incus.InstanceSpec
	settings map[string]string
	// creds are the passwords of an ApplyCredentials (never logged), and
	// backend the backend user it gives the members.
	creds   acl.Set
	backend acl.Backend
	// data is a Secret's content; secretName and observed (nil: absent)
	// name the formation's own Secret a WriteOwnedSecret writes.
	data       map[string][]byte
	secretName string
	observed   *corev1.Secret
	// files are an ApplyTLS's files, by path in the member.
	files map[string][]byte
	// record, when set, is applied to the status once the action succeeded:
	// the bookkeeping the next pass (or the next operator) relies on.
	record func(*redisv1alpha1.RedisSentinelFormationStatus)
}

// plan is what decide wants done in one pass.
type plan struct {
	topology topology.Plan
	actions  []action
	// requeue is how soon the pass wants to look again (0: no wish);
	// requeueNow asks for the next pass at once (a step that the next
	// observation must confirm, e.g. a create or a deletion).
	requeue    time.Duration
	requeueNow bool
	// progressing says what the operator is doing; "" when idle.
	progressing string
	// problems are reasons the formation is degraded found by deciding.
	problems []problem
	// record changes status whatever the actions' outcome.
	record []func(*redisv1alpha1.RedisSentinelFormationStatus)
	// withheld are the actions a pause held back (see withhold).
	withheld []action
	// unplaced says why members could not be placed on cluster members of
	// their own (see placeMembers); "" when none was refused.
	unplaced string
}

func (p *plan) add(a action) { p.actions = append(p.actions, a) }

func (p *plan) wakeIn(d time.Duration) {
	if p.requeue == 0 || d < p.requeue {
		p.requeue = d
	}
}

func (p *plan) degrade(reason, format string, args ...any) {
	p.problems = append(p.problems, problem{reason: reason, message: fmt.Sprintf(format, args...)})
}

// CrashWindow: a container that stops again within this time after the
// operator started it is crashing, not stopped by someone, and is started
// again only once it passed (an `incus stop` by hand within it counts as a
// crash too).
const CrashWindow = time.Minute

// Timing of the decisions.
const (
	// awaitMembersOnBootstrap bounds how long a new formation waits, after
	// its creation, for every member's address before it is bootstrapped
	// anyway (see topology.Input.AwaitMembersUntil).
	awaitMembersOnBootstrap = 30 * time.Second
	// writeHold bounds how long clients wait on a planned failover:
	// catching up takes milliseconds, Sentinel's promotion about a second.
	writeHold = 3 * time.Second
	// catchUpBound is how long linked replicas get to replicate the whole
	// stream of a held master before the planned failover is given up
	// (and retried after plannedFailoverPause).
	catchUpBound = time.Second
	// plannedFailoverPause keeps a planned failover from being asked for
	// twice while Sentinel carries out the first.
	plannedFailoverPause = 30 * time.Second
	// holdPoll and promotionPoll are how often a planned failover's next
	// step is checked.
	holdPoll      = 20 * time.Millisecond
	promotionPoll = 50 * time.Millisecond
)

// decide is the pure heart of a pass: from the spec, the status, the
// observation and the time it returns the actions to run and the status
// bookkeeping they imply. It does no I/O.
func decide(f *redisv1alpha1.RedisSentinelFormation, o *observation, opts Options, now time.Time) plan {
	var p plan
	if o.stop != nil {
		return p
	}
	p.topology = topology.Decide(topologyInput(f, o, now))
	p.record = append(p.record, recordStaleSentinels(p.topology.Stale, now))

	// From here on the formation owns instances: deleting it must remove
	// them first. A formation that never got this far deletes at once.
	if !controllerutil.ContainsFinalizer(f, finalizerName) {
		p.add(action{kind: actAddFinalizer})
		p.requeueNow = true
		return p
	}
	outage := decideMasterOutage(&p, f, o, now)
	// A password step runs alone: topology actions of the same pass would
	// configure members with the passwords being replaced.
	if decideCredentials(&p, f, o, opts, now) || decideTLSMaterial(&p, f, o) {
		return p
	}
	if decideInstances(&p, f, o, now) {
		return p
	}
	for _, name := range slices.Sorted(maps.Keys(p.topology.Untrusted)) {
		p.degrade(ReasonUntrustedMaster, "%s", untrustedMessage(name, p.topology.Untrusted[name]))
	}
	decideStalePriority(&p, o)
	for _, a := range p.topology.Actions {
		if m := o.member(a.Member); m != nil && o.hostEvacuating(m) != "" {
			// Incus is stopping its container to move it: a unit started
			// now would fail (and end the pass before the hand-over).
			continue
		}
		if a.Kind == topology.Configure && o.tls != nil && o.tls.member[a.Member] == nil {
			p.progressing = "waiting for the TLS certificate of member " + a.Member
			continue
		}
		p.add(action{kind: actTopology, member: a.Member, target: a.Target, topology: a, reason: a.Reason, record: recordTopologyAction(f, o, a, now)})
		// A configured or started member answers once the action is done
		// (systemd waits for redis-server's readiness): look at once.
		p.requeueNow = p.requeueNow || a.Kind == topology.Configure || a.Kind == topology.StartRedis
	}
	if p.topology.FailoverInProgress {
		p.progressing = "Sentinel is failing over"
	} else {
		decideSettings(&p, f, o)
	}
	decideTLSRollout(&p, f, o, p.topology.FailoverInProgress)
	recordTLSStatus(&p, o)
	need := needsPlannedFailover(f, o, &p)
	if switchover := decideSwitchover(&p, f, o, now); need == "" {
		need = switchover
	}
	decidePlannedFailover(&p, f, o, now, need)
	decideScaleDown(&p, f, o)
	decideConnection(&p, f, o)
	decideBackendRules(&p, f, o)
	if outage != "" {
		p.progressing = outage // what matters most while the master is down
	}
	decideSettlePoll(&p, f, o, now)
	return p
}

// Timing of a new member's last steps.
const (
	// settleWindow is how long after its container was created a member
	// counts as new.
	settleWindow = time.Minute
	// settlePoll is how soon a pass looks again while a new member is not
	// healthy yet: nothing announces that its replica link came up or that
	// its sentinel took its first look (Sentinel emits no event for
	// replicas and sentinels its config already names).
	settlePoll = 250 * time.Millisecond
)

// decideSettlePoll looks again soon while the formation has a member
// created within the settle window and is not settled yet: the last steps
// (replica link, the sentinels' first replies) take well under a second,
// and the default poll of a converging formation would add up to seconds
// to its bring-up or a member's rebuild.
func decideSettlePoll(p *plan, f *redisv1alpha1.RedisSentinelFormation, o *observation, now time.Time) {
	recent := slices.ContainsFunc(o.members, func(m *memberObs) bool {
		return m.instance != nil && now.Sub(m.instance.CreatedAt) < settleWindow
	})
	if recent && !settled(f, o, p.topology) {
		p.wakeIn(settlePoll)
	}
}

func topologyInput(f *redisv1alpha1.RedisSentinelFormation, o *observation, now time.Time) topology.Input {
	in := topology.Input{
		Desired:    desired(f),
		Departing:  len(o.leaving),
		Now:        now,
		LastReset:  map[string]time.Time{},
		StaleSince: map[string]time.Time{},
	}
	for _, m := range f.Status.Members {
		if m.SentinelResetAt != nil {
			in.LastReset[m.Name] = m.SentinelResetAt.Time
		}
		if m.SentinelStaleSince != nil {
			in.StaleSince[m.Name] = m.SentinelStaleSince.Time
		}
	}
	if f.Status.Master != nil {
		in.PreviousMaster = f.Status.Master.Member
	} else {
		in.AwaitMembersUntil = f.CreationTimestamp.Add(awaitMembersOnBootstrap)
	}
	for _, m := range o.members {
		in.Members = append(in.Members, m.Member)
		if m.instance != nil && m.instance.CreatedAt.After(in.LastRebuild) {
			in.LastRebuild = m.instance.CreatedAt
		}
	}
	for _, m := range o.leaving {
		if !m.Home.IsZero() {
			in.DepartingHomes = append(in.DepartingHomes, m.Home)
		}
	}
	return in
}

func desired(f *redisv1alpha1.RedisSentinelFormation) topology.Desired {
	return topology.Desired{
		MasterName:        f.Spec.MasterName,
		Members:           int(f.Spec.Members),
		Quorum:            int(f.Spec.Quorum),
		DownAfterMs:       int(f.Spec.Sentinel.DownAfterMilliseconds),
		FailoverTimeoutMs: int(f.Spec.Sentinel.FailoverTimeoutMilliseconds),
		ParallelSyncs:     int(f.Spec.Sentinel.ParallelSyncs),
	}
}

// decideInstances keeps every member's container present, running and
// pinned to its address, and replaces outdated ones one at a time. It
// reports whether the pass must end here (a replacement was decided: the
// next pass observes the result).
func decideInstances(p *plan, f *redisv1alpha1.RedisSentinelFormation, o *observation, now time.Time) bool {
	if o.missingPrerequisite != nil {
		p.degrade(o.missingPrerequisite.reason, "%s", o.missingPrerequisite.message)
		p.wakeIn(10 * time.Second)
	}
	decideLostHosts(p, f, o, now)
	decideAbandoned(p, o)
	if o.missingPrerequisite == nil {
		if replaceOutdated(p, f, o) || decideAddresses(p, f, o) {
			return true
		}
		decideCreates(p, f, o)
	}
	for _, m := range o.members {
		switch {
		case m.instance == nil:
		case m.instance.Status == "Stopped" && o.hostEvacuating(m) == "":
			// An evacuated host's instances are Incus's to move and start.
			decideStart(p, f, m, now)
		case !o.unpinnable && unpinned(m):
			p.add(action{kind: actPin, member: m.name, instance: m.instanceName, target: endpoint.Endpoint{Host: m.instance.IPv4}, reason: "keep the address across restarts and rebuilds"})
		}
	}
	return false
}

// decideCreates creates the missing members' containers, each on the
// cluster member placeMembers chose. Refused TLS material creates nothing,
// unless the members have material to rebuild one with.
func decideCreates(p *plan, f *redisv1alpha1.RedisSentinelFormation, o *observation) {
	var creating []*memberObs
	for _, m := range o.members {
		if m.instance == nil && (o.tls == nil || o.tls.problem == nil || o.tls.ca != nil) {
			creating = append(creating, m)
		}
	}
	if len(creating) == 0 {
		return
	}
	targets, refused := placeMembers(f, o, creating)
	if refused != "" {
		p.unplaced = refused
		p.degrade(ReasonCannotSpread, "%s", refused)
		p.wakeIn(blockedPoll)
		return
	}
	for _, m := range creating {
		// A network that is not a bridge takes no pinned address: the
		// member's MAC keeps its DHCP lease there.
		address := ""
		if !o.unpinnable {
			address = previousAddress(f, m.name)
		}
		spec := instanceSpec(f, m.index, address)
		spec.Name, spec.Target = m.instanceName, targets[m.name]
		maps.Copy(spec.Config, staticNetwork(o, address))
		if o.cluster != nil {
			// The operator decides when a member runs: one re-created
			// elsewhere while its host was lost must not start there
			// again beside its replacement when that host comes back.
			spec.Config["boot.autostart"] = "false"
		}
		p.add(action{kind: actCreate, member: m.name, instance: spec.Name, spec: spec, reason: "missing" + placedOn(spec.Target)})
	}
	p.progressing = "creating instances"
}

func placedOn(target string) string {
	if target == "" {
		return ""
	}
	return "; placed on cluster member " + target
}

// decideStart starts a stopped member's container. One that stops again
// right after being started is reported (Degraded, with where to look) and
// started again only once the crash window has passed.
func decideStart(p *plan, f *redisv1alpha1.RedisSentinelFormation, m *memberObs, now time.Time) {
	if st := findMember(f.Status.Members, m.name); st != nil && st.StartedAt != nil {
		if since := now.Sub(st.StartedAt.Time); since < CrashWindow {
			p.degrade(ReasonInstanceError, "instance %s of member %s stopped again %s after it was started (a failing init, see `incus console %s --show-log`, or stopped by hand); next start in %s",
				m.instanceName, m.name, since.Round(time.Second), m.instanceName, (CrashWindow - since).Round(time.Second))
			p.wakeIn(CrashWindow - since)
			return
		}
	}
	name := m.name
	p.add(action{kind: actStart, member: name, instance: m.instanceName, reason: "stopped", record: func(st *redisv1alpha1.RedisSentinelFormationStatus) {
		if ms := findMember(st.Members, name); ms != nil {
			ms.StartedAt = timePtr(now)
		}
	}})
	p.progressing = "starting instances"
}

// replaceOutdated replaces at most one outdated member per pass, and only
// while the formation is whole in this very observation (every member
// present and healthy, nothing leaving, no planned failover under way):
// replicas first, each rebuilt and synced before the next; the master last,
// after a planned failover moved the role away (needsPlannedFailover).
//
// A member that cannot take a full sync from the master's engine
// (staleMembers) is replaced without waiting for a sync that never comes
// (or that holds only until its next full sync): as soon as every other
// member is healthy and every sentinel answers.
func replaceOutdated(p *plan, f *redisv1alpha1.RedisSentinelFormation, o *observation) bool {
	old := rebuilds(f, o, p.topology)
	if len(old) == 0 {
		return false
	}
	if pf := f.Status.PlannedFailover; pf != nil && pf.Phase != redisv1alpha1.PlannedFailoverDone {
		return false
	}
	what := rolloutWhat(f, old)
	replace := func(m *memberObs, why string) bool {
		p.add(action{kind: actReplace, member: m.name, instance: m.instanceName, reason: fmt.Sprintf("%s (%s)", why, what)})
		p.progressing = fmt.Sprintf("replacing member %s: %s", m.name, what)
		p.requeueNow = true
		return true
	}
	if m := replaceableStale(o, p.topology); m != nil {
		return replace(m, fmt.Sprintf("it runs %s, which cannot take a full sync from the %s master: its copy is stale", m.engine().Name, masterMember(o, p.topology).engine().Name))
	}
	if m := stoppedOutdated(f, o, p.topology); m != nil {
		return replace(m, "it is stopped and was built from an older spec: rebuilt instead of started")
	}
	if !whole(f, o, p.topology) {
		if p.progressing == "" {
			p.progressing = what + "; the next member is replaced once the formation is healthy"
		}
		return false
	}
	for _, m := range old {
		if m.name != p.topology.MasterMember {
			why := "its container was built from an older spec"
			if !slices.Contains(outdated(f, o.members), m) {
				why = "it shares cluster member " + o.location(m) + " while another is free"
			}
			return replace(m, why)
		}
	}
	return false
}

// replaceableStale is the stale member to replace now, if any: one at a
// time, never during a failover or a scale-down, and only while every
// other member is healthy and every sentinel answers, so that the quorum
// holds without the replaced member's sentinel.
func replaceableStale(o *observation, tp topology.Plan) *memberObs {
	stale := staleMembers(o, tp)
	if len(stale) == 0 || tp.FailoverInProgress || len(o.leaving) > 0 {
		return nil
	}
	for _, m := range o.members {
		if !m.sentinelUp() || (!slices.Contains(stale, m) && memberHealth(m, tp) != redisv1alpha1.HealthHealthy) {
			return nil
		}
	}
	return stale[0]
}

// stoppedOutdated is the stopped outdated replica to rebuild rather than
// start, if any: one whose replacement stopped it and was interrupted
// before the delete (the operator died between the two), or one stopped by
// hand during a rollout. Started, it would be taken for a crash loop (it
// was started minutes ago at most) and, once synced, stopped again to be
// replaced. Only while every other member is healthy, every sentinel but
// its own answers and no failover or scale-down is under way, as for any
// replacement: its copy of the data is the master's, resynced on rebuild.
// One on an evacuated or offline cluster member is left to those paths.
func stoppedOutdated(f *redisv1alpha1.RedisSentinelFormation, o *observation, tp topology.Plan) *memberObs {
	if tp.FailoverInProgress || len(o.leaving) > 0 {
		return nil
	}
	var stopped *memberObs
	for _, m := range o.members {
		switch {
		case m.instance != nil && m.instance.Status == "Stopped":
			if stopped != nil || m.name == tp.MasterMember || o.hostEvacuating(m) != "" || o.hostDown(m) != "" || !slices.Contains(outdated(f, o.members), m) {
				return nil
			}
			stopped = m
		case !m.sentinelUp() || memberHealth(m, tp) != redisv1alpha1.HealthHealthy:
			return nil
		}
	}
	return stopped
}

// whole reports whether the formation is settled (see settled) with
// nothing leaving. A rollout replaces the next member only then.
func whole(f *redisv1alpha1.RedisSentinelFormation, o *observation, tp topology.Plan) bool {
	return len(o.leaving) == 0 && settled(f, o, tp)
}

// needsPlannedFailover says why the master role must move, if it must: the
// master is the last outdated member of a rollout, or a scale-down removes
// it.
func needsPlannedFailover(f *redisv1alpha1.RedisSentinelFormation, o *observation, p *plan) string {
	master := p.topology.MasterMember
	for _, m := range o.leaving {
		if m.Running && p.topology.Master == m.Redis {
			return "planned failover away from " + m.name + ", which the scale-down removes"
		}
	}
	if mm := masterMember(o, p.topology); mm != nil {
		if host := o.hostEvacuating(mm); host != "" {
			return "planned failover away from " + master + ": its cluster member " + host + " is being evacuated"
		}
	}
	old := rebuilds(f, o, p.topology)
	if len(old) == 1 && old[0].name == master && master != "" && whole(f, o, p.topology) {
		p.progressing = "replacing member " + master + ", the master, after a planned failover"
		return "planned failover away from " + master + " before replacing it"
	}
	return ""
}

// rebuilds are the members to replace: outdated ones, then misplaced ones
// (each once).
func rebuilds(f *redisv1alpha1.RedisSentinelFormation, o *observation, tp topology.Plan) []*memberObs {
	old := outdated(f, o.members)
	for _, m := range misplaced(f, o, tp) {
		if !slices.Contains(old, m) {
			old = append(old, m)
		}
	}
	return old
}

// decideScaleDown removes members beyond spec.members, never the master
// (it first hands its role over with a planned failover) and never during
// a failover. The remaining sentinels forget the removed ones through the
// guarded RESET of the topology decisions.
func decideScaleDown(p *plan, f *redisv1alpha1.RedisSentinelFormation, o *observation) {
	if len(o.leaving) == 0 || p.topology.FailoverInProgress {
		return
	}
	for _, m := range o.leaving {
		if m.instance != nil && m.instance.IPv4 != "" && p.topology.Master.Host == m.instance.IPv4 {
			return
		}
	}
	for _, m := range o.leaving {
		p.add(action{kind: actRemove, member: m.name, instance: m.instanceName, reason: fmt.Sprintf("spec.members is %d", f.Spec.Members)})
	}
	p.progressing = fmt.Sprintf("scaling down to %d members", f.Spec.Members)
}

// decidePlannedFailover moves the master role without losing acknowledged
// writes, one step per pass, its progress kept in status.plannedFailover:
//
//  1. hold writes on the master (CLIENT PAUSE WRITE, which ends by itself
//     after writeHold even if the operator dies);
//  2. once every linked replica has replicated the master's whole stream,
//     ask a sentinel with quorum for SENTINEL FAILOVER;
//  3. as soon as a replica answers as master, make the old master its
//     replica: held writes then fail with READONLY and go-redis asks
//     Sentinel again, instead of waiting out the hold.
//
// Without the hold, SENTINEL FAILOVER promotes a replica while the master
// still takes writes that other replicas acknowledge; those replicas then
// need a full resync from the new master and drop the writes.
func decidePlannedFailover(p *plan, f *redisv1alpha1.RedisSentinelFormation, o *observation, now time.Time, need string) {
	pf := f.Status.PlannedFailover
	if pf == nil {
		if need == "" {
			return
		}
		p.progressing = need
		if p.topology.FailoverInProgress {
			return
		}
		master, sentinel := roleHolder(o, p.topology), sentinelWithQuorum(o, "")
		if master == nil || sentinel == nil {
			p.degrade(ReasonNoMaster, "no answering master, or no sentinel with quorum, for the %s; retrying", need)
			p.wakeIn(convergePoll)
			return
		}
		from := master.name
		p.add(action{kind: actHoldWrites, member: from, target: master.Redis, reason: need, settings: outgoingMasterSettings(o, master), record: func(st *redisv1alpha1.RedisSentinelFormationStatus) {
			st.PlannedFailover = &redisv1alpha1.PlannedFailoverStatus{From: from, Reason: need, Phase: redisv1alpha1.PlannedFailoverHoldingWrites, HoldStartedAt: microTime(now)}
		}})
		p.wakeIn(holdPoll)
		return
	}
	from := o.member(pf.From)
	clear := func(st *redisv1alpha1.RedisSentinelFormationStatus) { st.PlannedFailover = nil }
	switch pf.Phase {
	case redisv1alpha1.PlannedFailoverHoldingWrites:
		p.progressing = pf.Reason
		if from == nil || !from.redisUp() || !from.Repl.IsMaster() {
			p.record = append(p.record, clear) // the role moved by itself; the hold expires
			p.requeueNow = true
			return
		}
		behind := replicaBehind(o, from)
		if now.Sub(pf.HoldStartedAt.Time) > catchUpBound {
			// Too late to ask Sentinel within the hold (also after a
			// failed SENTINEL FAILOVER or an operator restart): give up,
			// retried after plannedFailoverPause.
			why := "Sentinel could not be asked in time"
			if behind != "" {
				why = "replica " + behind + " did not catch up with the held master"
			}
			p.add(action{kind: actReleaseWrites, member: from.name, target: from.Redis, reason: why + "; the planned failover is retried", record: func(st *redisv1alpha1.RedisSentinelFormationStatus) {
				if st.PlannedFailover != nil {
					st.PlannedFailover.Phase, st.PlannedFailover.RequestedAt = redisv1alpha1.PlannedFailoverDone, microTimePtr(now)
				}
				failSwitchoverInProgress(why, now)(st)
			}})
			p.degrade(ReasonReplicaBehind, "planned failover away from %s given up: %s; retried in %s", from.name, why, plannedFailoverPause)
			return
		}
		if behind != "" {
			p.wakeIn(holdPoll)
			return
		}
		sentinel := sentinelWithQuorum(o, pf.From)
		if sentinel == nil {
			p.add(action{kind: actReleaseWrites, member: from.name, target: from.Redis, reason: "no sentinel with quorum", record: func(st *redisv1alpha1.RedisSentinelFormationStatus) {
				clear(st)
				failSwitchoverInProgress("no sentinel with quorum", now)(st)
			}})
			return
		}
		p.add(action{kind: actSentinelFailover, member: sentinel.name, target: sentinel.Sentinel, reason: pf.Reason, record: func(st *redisv1alpha1.RedisSentinelFormationStatus) {
			if st.PlannedFailover != nil {
				st.PlannedFailover.Phase, st.PlannedFailover.RequestedAt = redisv1alpha1.PlannedFailoverPromoting, microTimePtr(now)
			}
		}})
		p.wakeIn(promotionPoll)
	case redisv1alpha1.PlannedFailoverPromoting:
		p.progressing = pf.Reason
		done := func(st *redisv1alpha1.RedisSentinelFormationStatus) {
			if st.PlannedFailover != nil {
				st.PlannedFailover.Phase = redisv1alpha1.PlannedFailoverDone
			}
		}
		if promoted := promotedOtherThan(o, pf.From); promoted != nil && from != nil && from.redisUp() {
			p.add(action{kind: actDemoteOldMaster, member: from.name, target: promoted.Redis, reason: "Sentinel promoted " + promoted.name, record: done})
			return
		}
		if now.Sub(pf.HoldStartedAt.Time) > writeHold {
			p.record = append(p.record, done) // the hold expired by itself
			p.requeueNow = true
			return
		}
		p.wakeIn(promotionPoll)
	case redisv1alpha1.PlannedFailoverDone:
		// The cooldown keeps Sentinel from being asked twice while it
		// carries out the first request; once the sentinels name another
		// master, that request is over.
		if masterMovedFrom(p.topology, pf.From) || pf.RequestedAt == nil || now.Sub(pf.RequestedAt.Time) >= plannedFailoverPause {
			p.record = append(p.record, clear)
			p.requeueNow = need != ""
			return
		}
		if need != "" {
			p.wakeIn(plannedFailoverPause - now.Sub(pf.RequestedAt.Time))
		}
	}
}

// masterMember is the plan's master if its redis-server answers as master.
func masterMember(o *observation, tp topology.Plan) *memberObs {
	for _, m := range o.members {
		if m.name == tp.MasterMember && m.redisUp() && m.Repl.IsMaster() {
			return m
		}
	}
	return nil
}

// roleHolder is the answering master a planned failover moves the role
// away from: the plan's master member, or a leaving member (a scale-down)
// at the sentinels' master address, which topology does not know.
func roleHolder(o *observation, tp topology.Plan) *memberObs {
	if m := masterMember(o, tp); m != nil {
		return m
	}
	for _, m := range o.leaving {
		if m.Redis == tp.Master && m.redisUp() && m.Repl.IsMaster() {
			return m
		}
	}
	return nil
}

// sentinelWithQuorum is a sentinel that can fail the master over under
// spec.masterName, preferably not member away's nor one on a host being
// evacuated: the sentinel that leads a failover spreads the new master to
// the others with its hello messages, every 2 s, and one that stops with
// the member the role moves away from (an evacuation, a rolling restart)
// may stop before it has; the others then still follow the gone master
// and fail over again once it is down.
func sentinelWithQuorum(o *observation, away string) *memberObs {
	var fallback *memberObs
	for _, m := range o.members {
		if !m.sentinelUp() || m.quorumErr != nil || len(m.OtherNames) > 0 {
			continue
		}
		if m.name != away && o.hostEvacuating(m) == "" {
			return m
		}
		if fallback == nil {
			fallback = m
		}
	}
	return fallback
}

// replicaBehind names a replica linked to master whose offset is behind it.
func replicaBehind(o *observation, master *memberObs) string {
	for _, m := range o.members {
		if m != master && m.redisUp() && m.Repl.LinkUp && m.Repl.Offset < master.Repl.Offset {
			return m.name
		}
	}
	return ""
}

func promotedOtherThan(o *observation, name string) *memberObs {
	for _, m := range o.members {
		if m.name != name && m.redisUp() && m.Repl.IsMaster() {
			return m
		}
	}
	return nil
}

func (m *memberObs) redisUp() bool { return m.Running && m.RedisErr == nil }

func (m *memberObs) sentinelUp() bool { return m.Running && m.SentinelErr == nil }

// masterMovedFrom reports whether the sentinels agree on a master other
// than from, with no failover running: a failover away from from is over.
func masterMovedFrom(tp topology.Plan, from string) bool {
	return tp.MasterMember != "" && tp.MasterMember != from && tp.Authoritative && !tp.FailoverInProgress
}

// recordStaleSentinels keeps, per member, since when its sentinel has
// monitored another address than the master.
func recordStaleSentinels(stale []string, now time.Time) func(*redisv1alpha1.RedisSentinelFormationStatus) {
	return func(st *redisv1alpha1.RedisSentinelFormationStatus) {
		isStale := map[string]bool{}
		for _, name := range stale {
			isStale[name] = true
		}
		for i := range st.Members {
			m := &st.Members[i]
			switch {
			case !isStale[m.Name]:
				m.SentinelStaleSince = nil
			case m.SentinelStaleSince == nil:
				m.SentinelStaleSince = timePtr(now)
			}
		}
	}
}

// recordTopologyAction keeps the time of a SENTINEL RESET, which may not be
// repeated too soon, and the runtime settings a configured member's
// redis.conf was written with (so that they are not set again).
func recordTopologyAction(f *redisv1alpha1.RedisSentinelFormation, o *observation, a topology.Action, now time.Time) func(*redisv1alpha1.RedisSentinelFormationStatus) {
	switch a.Kind {
	case topology.Reset:
		return func(st *redisv1alpha1.RedisSentinelFormationStatus) {
			if m := findMember(st.Members, a.Member); m != nil {
				m.SentinelResetAt = timePtr(now)
			}
		}
	case topology.Configure:
		settings, err := runtimeSettings(f)
		if err != nil {
			return nil
		}
		_, tlsHash := o.tls.memberFiles(o.member(a.Member))
		return func(st *redisv1alpha1.RedisSentinelFormationStatus) {
			if m := findMember(st.Members, a.Member); m != nil {
				m.SettingsHash = fingerprint.Map(settings)
				m.TLSHash, m.SentinelTLSHash = tlsHash, tlsHash
			}
		}
	}
	return nil
}

// decideSettings brings every answering redis-server to the spec's runtime
// settings with CONFIG SET + CONFIG REWRITE, without a restart. A member is
// told again only when the settings differ from those status records it
// was last given.
func decideSettings(p *plan, f *redisv1alpha1.RedisSentinelFormation, o *observation) {
	settings, err := runtimeSettings(f)
	if err != nil {
		p.degrade(ReasonInvalidSpec, "%v", err)
		return
	}
	hash := fingerprint.Map(settings)
	for _, m := range o.members {
		if !m.redisUp() {
			continue
		}
		if st := findMember(f.Status.Members, m.name); st != nil && st.SettingsHash == hash {
			continue
		}
		name := m.name
		p.add(action{kind: actConfigSet, member: name, target: m.Redis, settings: maps.Clone(settings), reason: "runtime settings differ from the spec", record: func(st *redisv1alpha1.RedisSentinelFormationStatus) {
			if ms := findMember(st.Members, name); ms != nil {
				ms.SettingsHash = hash
			}
		}})
	}
}
