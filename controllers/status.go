package controllers

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/internal/endpoint"
	"github.com/incusops/redis-sentinel-operator/internal/metrics"
	"github.com/incusops/redis-sentinel-operator/internal/sentinel"
	"github.com/incusops/redis-sentinel-operator/internal/topology"
)

// Reasons of the Ready, Degraded and Progressing conditions.
const (
	ReasonReady                    = "FormationReady"
	ReasonNotReady                 = "NotReady"
	ReasonHealthy                  = "Healthy"
	ReasonNoMaster                 = "NoMaster"
	ReasonMemberDown               = "MemberDown"
	ReasonSentinelDown             = "SentinelDown"
	ReasonQuorumLost               = "QuorumLost"
	ReasonSentinelsPartial         = "SentinelDiscoveryIncomplete"
	ReasonFailingOver              = "FailoverInProgress"
	ReasonProvisioning             = "Provisioning"
	ReasonIdle                     = "Idle"
	ReasonBlocked                  = "Blocked"
	ReasonReplicaBehind            = "ReplicaBehind"
	ReasonInvalidSpec              = "InvalidSpec"
	ReasonConnectionSecretNotOwned = "ConnectionSecretNotOwned"
	ReasonReconcileError           = "ReconcileError"
	ReasonUntrustedMaster          = "UntrustedMaster"
	ReasonCredentialsRefused       = "CredentialsRefused"
)

// problem is one reason the formation is not healthy.
type problem struct {
	reason  string
	message string
}

// offsetRefresh is how often a status whose only change is replication
// offsets and lag is written: they move with every write and every
// replication ping, and would otherwise cost an API write per resync.
const offsetRefresh = 30 * time.Second

// setStatus writes into f.Status what this pass observed and did; it never
// reports more than was seen. It is pure, like decide, and returns the
// Events to record once the status is written.
func setStatus(f *redisv1alpha1.RedisSentinelFormation, o *observation, p plan, res outcome, opts Options, now time.Time) []note {
	before := f.Status.DeepCopy()
	st := &f.Status
	var notes []note
	notes = append(notes, setSecretsValid(f, o)...)
	if o.host != "" {
		st.IncusHost = o.host
	}
	if o.stop == nil {
		setMembers(f, o, p.topology)
		notes = append(notes, recordMaster(f, p.topology, takenOver(o, p.topology, now), o.switches)...)
		notes = append(notes, untrustedNotes(p.topology)...)
	}
	for _, rec := range p.record {
		if rec != nil {
			rec(st)
		}
	}
	for _, a := range res.done {
		if a.record != nil {
			a.record(st)
		}
	}
	recordEvents(st, o.events)
	setConditions(f, o, p, res, now)
	setSpreadCondition(f, o, p, now)
	notes = append(notes, setTLSCondition(f, o, now)...)
	notes = append(notes, setSwitchoverCondition(f, before.Switchover, now)...)
	notes = append(notes, setPausedCondition(f, p.withheld, now)...)
	notes = append(notes, blockedNotes(before, f, o)...)
	if o.stop == nil && res.err == nil && specRealized(f, o) {
		st.ObservedGeneration = f.Generation
	}
	keepOffsetsUnlessDue(before, st, now)
	return notes
}

// specRealized reports whether the observed containers are the spec's: none
// outdated, none beyond spec.members. Until then a rollout or scale-down of
// this generation is under way, however Ready each pass looks (a pass
// replacing a member reports what it saw before the replacement), so the
// generation is not stamped as observed.
func specRealized(f *redisv1alpha1.RedisSentinelFormation, o *observation) bool {
	return len(o.leaving) == 0 && len(outdated(f, o.members)) == 0
}

// setSecretsValid sets the SecretsValid condition from the Secrets read (it
// is left as it was when they could not be read at all).
func setSecretsValid(f *redisv1alpha1.RedisSentinelFormation, o *observation) []note {
	se := o.secretProblem
	if se == nil && o.stopPhase == "secrets" {
		return nil
	}
	c := metav1.Condition{Type: redisv1alpha1.ConditionSecretsValid, Status: metav1.ConditionTrue, Reason: ReasonSecretsValid,
		Message: "both password Secrets are present and pass the " + string(f.Spec.Environment) + " policy", ObservedGeneration: f.Generation}
	if se != nil {
		c.Status, c.Reason, c.Message = metav1.ConditionFalse, se.reason, se.message
	}
	if !meta.SetStatusCondition(&f.Status.Conditions, c) || se == nil {
		return nil
	}
	return []note{{eventType: corev1.EventTypeWarning, reason: se.reason, action: "ValidateSecrets", message: se.message + "; nothing is created or changed until it is fixed"}}
}

// setMembers writes members, readiness and sentinels from the observation,
// keeping each member's bookkeeping (start, reset, stale and settings
// times) from the previous status.
func setMembers(f *redisv1alpha1.RedisSentinelFormation, o *observation, tp topology.Plan) {
	st := &f.Status
	statuses := make([]redisv1alpha1.MemberStatus, 0, len(o.members))
	var ready int32
	var masterOffset int64
	if mm := masterMember(o, tp); mm != nil {
		masterOffset = mm.Repl.Offset
	}
	for _, m := range o.members {
		ms := memberStatus(f, m, tp, masterOffset)
		ms.Location = o.location(m)
		if prev := findMember(st.Members, m.name); prev != nil {
			ms.StartedAt, ms.SentinelResetAt, ms.SentinelStaleSince, ms.SettingsHash = prev.StartedAt, prev.SentinelResetAt, prev.SentinelStaleSince, prev.SettingsHash
			ms.TLSHash, ms.SentinelTLSHash = prev.TLSHash, prev.SentinelTLSHash
			ms.HostLostSince, ms.AbandonedInstance = prev.HostLostSince, prev.AbandonedInstance
			if m.unreadable() {
				ms.Engine = prev.Engine
			}
			if ms.Location == "" {
				ms.Location = prev.Location
			}
		}
		if ms.Health == redisv1alpha1.HealthHealthy {
			ready++
		}
		statuses = append(statuses, ms)
	}
	st.Members, st.ReadyMembers = statuses, ready

	var reachable int32
	quorumOK := true
	for _, m := range o.members {
		if m.sentinelUp() {
			reachable++
			quorumOK = quorumOK && m.quorumErr == nil
		}
	}
	st.Sentinels = redisv1alpha1.SentinelsStatus{Reachable: reachable, QuorumOK: reachable > 0 && quorumOK}
}

func memberStatus(f *redisv1alpha1.RedisSentinelFormation, m *memberObs, tp topology.Plan, masterOffset int64) redisv1alpha1.MemberStatus {
	p := memberPorts(f, m)
	st := redisv1alpha1.MemberStatus{Name: m.name, Instance: m.instanceName, Role: redisv1alpha1.RoleUnknown, Address: memberAddress(f, m),
		RedisPort: int32(p.redis), SentinelPort: int32(p.sentinel)}
	if m.instance != nil {
		st.InstanceState = m.instance.Status
		st.Engine = redisv1alpha1.Engine(m.engine().Name)
	}
	st.SentinelUp = m.sentinelUp()
	if m.redisUp() {
		st.ReplicationOffset = m.Repl.Offset
		if m.Repl.IsMaster() {
			st.Role = redisv1alpha1.RoleMaster
		} else {
			st.Role = redisv1alpha1.RoleReplica
			st.MasterLinkUp = m.Repl.LinkUp
			st.LagBytes = max(0, masterOffset-m.Repl.Offset)
		}
	}
	st.Health = memberHealth(m, tp)
	return st
}

// memberAddress is where the member lives: its running container's address,
// else the address pinned on its eth0, else the last one status recorded.
// A stopped or deleted container keeps its address, so it is rebuilt there.
func memberAddress(f *redisv1alpha1.RedisSentinelFormation, m *memberObs) string {
	if m.instance != nil {
		if m.instance.IPv4 != "" {
			return m.instance.IPv4
		}
		if pinned := m.instance.Devices["eth0"]["ipv4.address"]; pinned != "" {
			return pinned
		}
	}
	return previousAddress(f, m.name)
}

func memberHealth(m *memberObs, tp topology.Plan) redisv1alpha1.MemberHealth {
	switch {
	case m.instance == nil:
		return redisv1alpha1.HealthMissing
	case m.instance.Status != "Running":
		return redisv1alpha1.HealthStopped
	case !m.Running || (m.Probe != nil && !m.Probe.Configured):
		return redisv1alpha1.HealthPending
	case m.RedisErr != nil:
		return redisv1alpha1.HealthUnreachable
	case m.Repl.IsMaster():
		if m.name == tp.MasterMember {
			return redisv1alpha1.HealthHealthy
		}
		return redisv1alpha1.HealthSyncing // a second master, being demoted
	case m.Repl.LinkUp && m.Redis != tp.Master && m.Repl.Master == tp.Master:
		return redisv1alpha1.HealthHealthy
	default:
		return redisv1alpha1.HealthSyncing
	}
}

// takenOver is when the master took over as far as the sentinels tell
// (the earliest now - role-reported-time among those monitoring it), or
// now when none tells.
func takenOver(o *observation, tp topology.Plan, now time.Time) time.Time {
	at := now
	for _, m := range o.members {
		if m.sentinelUp() && m.View.Address == tp.Master && m.View.RoleReportedAgo > 0 {
			at = minTime(at, now.Add(-m.View.RoleReportedAgo))
		}
	}
	return at
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// recordMaster records the master Sentinel's majority names. A master with
// a newer config epoch than the recorded one is a failover, counted once
// whatever the number of passes or operators that see it; one that the
// operator missed while it was not running is counted by the first pass
// that sees it, at the time the sentinels say the master took over. The
// watcher's record of that switch, when it has one (its +switch-master
// reached it during this pass), gives the switch's time and the old
// master's first +sdown, so the outage is measured whichever pass counts it.
func recordMaster(f *redisv1alpha1.RedisSentinelFormation, tp topology.Plan, now time.Time, switches []sentinel.Switch) []note {
	st := &f.Status
	if tp.MasterMember == "" || !tp.Authoritative || tp.FailoverInProgress {
		return nil // keep the last known master rather than guess
	}
	prev := st.Master
	if prev != nil && tp.ConfigEpoch < prev.ConfigEpoch && (len(tp.Stale) > 0 || tp.Source != topology.SourceSentinels) {
		// Some sentinel has not heard of the recorded switch yet; only
		// when every answering sentinel agrees on an older epoch (they
		// were all rebuilt) is their view taken.
		return nil
	}
	if prev != nil && prev.Member == tp.MasterMember {
		prev.Address, prev.Port = tp.Master.Host, int32(tp.Master.Port)
		// A master monitored afresh under a new spec.masterName reports
		// config epoch 0, while Sentinel's next failover still takes an
		// epoch above every earlier one (its current epoch is not reset):
		// lowering the record would count the watcher's earlier switches
		// again (recordSwitches).
		prev.ConfigEpoch = max(prev.ConfigEpoch, tp.ConfigEpoch)
		return nil
	}
	at, sdownAt := now, time.Time{}
	if prev != nil {
		if sw, ok := watchedSwitch(f, switches, prev.Member, tp.MasterMember, tp.ConfigEpoch); ok {
			at, sdownAt = sw.Time, sw.SdownAt
		}
	}
	since := metav1.NewTime(at)
	st.Master = &redisv1alpha1.MasterStatus{Member: tp.MasterMember, Address: tp.Master.Host, Port: int32(tp.Master.Port), Since: &since, ConfigEpoch: tp.ConfigEpoch}
	if prev == nil {
		return nil // the first master: a bootstrap, not a failover
	}
	return []note{countFailover(f, prev.Member, tp.MasterMember, at, tp.ConfigEpoch, sdownAt)}
}

// watchedSwitch finds the watcher's record of the switch from -> to at
// epoch: by its epoch, or, where the watcher could not read it, by its
// members.
func watchedSwitch(f *redisv1alpha1.RedisSentinelFormation, switches []sentinel.Switch, from, to string, epoch int64) (sentinel.Switch, bool) {
	for _, sw := range slices.Backward(switches) {
		sameSwitch := (sw.Epoch != 0 && sw.Epoch == epoch) || (sw.Epoch == 0 && memberAt(f, sw.From) == from)
		if sameSwitch && memberAt(f, sw.To) == to {
			return sw, true
		}
	}
	return sentinel.Switch{}, false
}

// untrustedMessage says that a sentinel monitors addr, which is no
// member's: the Degraded condition's and the Event's text.
func untrustedMessage(sentinel string, addr endpoint.Endpoint) string {
	return fmt.Sprintf("sentinel %s monitors %s, which is no member of this formation: it is never followed, and the sentinel is re-pointed at the master", sentinel, addr)
}

// untrustedNotes warn of such sentinels once per pass that sees them: the
// condition naming them is gone as soon as they are re-pointed, the Event
// stays.
func untrustedNotes(tp topology.Plan) []note {
	var notes []note
	for _, name := range slices.Sorted(maps.Keys(tp.Untrusted)) {
		notes = append(notes, note{eventType: corev1.EventTypeWarning, reason: ReasonUntrustedMaster, action: "Distrust", member: name, message: untrustedMessage(name, tp.Untrusted[name])})
	}
	return notes
}

// recordSwitches records the Sentinel watcher's master switches that are
// newer than the recorded master (by config epoch), oldest first. Replaying
// the same +switch-master any number of times records it once. A switch
// whose epoch the watcher could not read is left to the full observation.
func recordSwitches(f *redisv1alpha1.RedisSentinelFormation, switches []sentinel.Switch) (bool, []note) {
	st := &f.Status
	var notes []note
	for _, sw := range switches {
		if sw.Epoch == 0 || (st.Master != nil && sw.Epoch <= st.Master.ConfigEpoch) {
			continue
		}
		host, portStr, _ := net.SplitHostPort(sw.To)
		port, _ := strconv.Atoi(portStr)
		from, to := memberAt(f, sw.From), memberAt(f, sw.To)
		if to == sw.To {
			continue // no member's address: never taken as the master (the full pass repairs the sentinel)
		}
		since := metav1.NewTime(sw.Time)
		st.Master = &redisv1alpha1.MasterStatus{Member: to, Address: host, Port: int32(port), Since: &since, ConfigEpoch: sw.Epoch}
		notes = append(notes, countFailover(f, from, to, sw.Time, sw.Epoch, sw.SdownAt))
	}
	return len(notes) > 0, notes
}

// countFailover records one master switch in status and returns its Event.
// What promoted the new master, and when the outage began, come from the
// operator's own record: the planned failover it ran, or the master outage
// it saw (Incus's stop event, or the first +sdown); failing those, from the
// watcher's first +sdown of the old master (sdownAt, zero when not seen).
func countFailover(f *redisv1alpha1.RedisSentinelFormation, from, to string, at time.Time, epoch int64, sdownAt time.Time) note {
	st := &f.Status
	st.Failovers++
	rec := &redisv1alpha1.FailoverRecord{Time: metav1.NewMicroTime(at), From: from, To: to, ConfigEpoch: epoch, Path: redisv1alpha1.FailoverPathSentinel}
	var began time.Time
	how := "the sentinels agreed the master was down"
	switch out, pf := st.MasterOutage, st.PlannedFailover; {
	case pf != nil && pf.From == from && pf.RequestedAt != nil:
		rec.Path, began, how = redisv1alpha1.FailoverPathPlanned, pf.HoldStartedAt.Time, "planned failover: "+pf.Reason
	case out != nil && out.Member == from:
		rec.MasterLostAt, rec.DetectedAt, began = microTimePtr(out.LostAt.Time), microTimePtr(out.DetectedAt.Time), out.LostAt.Time
		if out.FailoverRequestedAt != nil {
			rec.Path, how = redisv1alpha1.FailoverPathFast, "fast failover: Incus reported the master's container stopped and sentinel "+out.Sentinel+" was asked to fail over"
		}
	case !sdownAt.IsZero():
		lost := lostBefore(f, sdownAt)
		rec.MasterLostAt, rec.DetectedAt, began = microTimePtr(lost), microTimePtr(sdownAt), lost
	}
	st.MasterOutage = nil
	st.LastFailover = rec
	var d time.Duration
	outage := "outage not measured: the operator saw neither the old master's loss nor a planned failover"
	if !began.IsZero() && at.After(began) {
		d = at.Sub(began)
		rec.Duration = &metav1.Duration{Duration: d}
		outage = "outage " + d.Round(time.Millisecond).String()
		if rec.DetectedAt != nil {
			outage += fmt.Sprintf(" (detected after %s)", rec.DetectedAt.Sub(began).Round(time.Millisecond))
		}
	}
	return note{eventType: corev1.EventTypeWarning, reason: "MasterSwitched", action: "Failover", member: to,
		message:  fmt.Sprintf("master moved from %s to %s through the %s path (%s); %s, config epoch %d", from, to, strings.ToLower(string(rec.Path)), how, outage, epoch),
		failover: &failoverNote{path: strings.ToLower(string(rec.Path)), outage: d}}
}

// recordEvents copies the watcher's latest Sentinel events into status.
func recordEvents(st *redisv1alpha1.RedisSentinelFormationStatus, events []sentinel.Event) {
	if len(events) == 0 {
		return
	}
	out := make([]redisv1alpha1.SentinelEvent, 0, len(events))
	for _, e := range events {
		// At the precision the API server keeps, or an idle pass would
		// always see a change to write.
		out = append(out, redisv1alpha1.SentinelEvent{Time: metav1.NewMicroTime(e.Time.Truncate(time.Microsecond)), Sentinel: e.Sentinel, Type: e.Type, Message: e.Payload})
	}
	st.RecentEvents = out
}

// memberAt names the member at ip:port from status, or returns the address.
func memberAt(f *redisv1alpha1.RedisSentinelFormation, addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	for _, m := range f.Status.Members {
		if m.Address == host {
			return m.Name
		}
	}
	return addr
}

// setConditions derives Ready, Degraded, Progressing and the phase. A
// condition that changes status is stamped with the pass's time (the clock
// blockedRetry backs off on).
func setConditions(f *redisv1alpha1.RedisSentinelFormation, o *observation, p plan, res outcome, now time.Time) {
	st := &f.Status
	topologyRan := o.stop == nil
	problems := append(append(append([]problem(nil), o.problems...), p.problems...), res.problems...)
	inputProblems := len(problems) > 0 // Incus, input and action problems degrade at any time
	var topo []problem
	discovering := false
	if topologyRan {
		topo, discovering = topologyProblems(f, o, p.topology)
	}
	problems = append(problems, topo...)
	passErr := res.err
	if passErr == nil && !errors.Is(o.stop, errBlocked) {
		passErr = o.stop
	}
	if passErr != nil && len(problems) == 0 && !errors.Is(passErr, errBlocked) {
		problems = append(problems, problem{ReasonReconcileError, passErr.Error()})
		inputProblems = true
	}
	blocked := errors.Is(o.stop, errBlocked) || errors.Is(res.err, errBlocked)
	ready := topologyRan && passErr == nil && !inputProblems && settled(f, o, p.topology)
	secretsBlocked := meta.IsStatusConditionFalse(st.Conditions, redisv1alpha1.ConditionSecretsValid)
	bootstrapped := st.Master != nil

	set := func(t string, status bool, reason, message string) {
		c := metav1.Condition{Type: t, Status: metav1.ConditionFalse, Reason: reason, Message: message, ObservedGeneration: f.Generation, LastTransitionTime: metav1.NewTime(now)}
		if status {
			c.Status = metav1.ConditionTrue
		}
		meta.SetStatusCondition(&st.Conditions, c)
	}

	switch {
	case ready:
		set(redisv1alpha1.ConditionReady, true, ReasonReady, fmt.Sprintf("master %s with %d linked replicas; %d sentinels agree, quorum OK", p.topology.MasterMember, len(o.members)-1, st.Sentinels.Reachable))
	case secretsBlocked:
		set(redisv1alpha1.ConditionReady, false, ReasonBlocked, "waiting for valid password Secrets (see SecretsValid)")
	case len(problems) > 0:
		set(redisv1alpha1.ConditionReady, false, problems[0].reason, problems[0].message)
	case discovering:
		set(redisv1alpha1.ConditionReady, false, ReasonSentinelsPartial, fmt.Sprintf("not every sentinel knows its %d peers and the %d replicas yet", f.Spec.Members-1, f.Spec.Members-1))
	default:
		set(redisv1alpha1.ConditionReady, false, ReasonNotReady, "members are being created, configured or synced")
	}

	// Before the first master, lost members are a bring-up in progress.
	degraded := len(problems) > 0 && (bootstrapped || inputProblems)
	if degraded {
		set(redisv1alpha1.ConditionDegraded, true, problems[0].reason, joinProblems(problems))
	} else {
		set(redisv1alpha1.ConditionDegraded, false, ReasonHealthy, "no member, sentinel or quorum is lost")
	}

	progressing := p.progressing
	if res.progressing != "" {
		progressing = res.progressing
	}
	if !ready && progressing == "" && !degraded && !secretsBlocked {
		progressing = "waiting for members to come up and sync"
	}
	switch {
	case paused(f):
		set(redisv1alpha1.ConditionProgressing, false, ReasonPaused, "paused by the "+redisv1alpha1.AnnotationPause+" annotation")
	case progressing != "":
		set(redisv1alpha1.ConditionProgressing, true, ReasonProvisioning, progressing)
	default:
		set(redisv1alpha1.ConditionProgressing, false, ReasonIdle, "nothing to do")
	}

	switch {
	case paused(f):
		st.Phase = redisv1alpha1.PhasePaused
	case secretsBlocked || blocked:
		st.Phase = redisv1alpha1.PhaseBlocked
	case p.topology.FailoverInProgress:
		st.Phase = redisv1alpha1.PhaseFailingOver
	case ready:
		st.Phase = redisv1alpha1.PhaseReady
	case degraded:
		st.Phase = redisv1alpha1.PhaseDegraded
	default:
		st.Phase = redisv1alpha1.PhaseProvisioning
	}
}

// settled reports whether the observation alone shows a Ready formation: a
// master, every member present and healthy, every sentinel answering with
// quorum and knowing all its peers, no failover running.
func settled(f *redisv1alpha1.RedisSentinelFormation, o *observation, tp topology.Plan) bool {
	if tp.FailoverInProgress || len(o.members) != int(f.Spec.Members) || masterMember(o, tp) == nil || !backendRulesApplied(f) {
		return false
	}
	for _, m := range o.members {
		if memberHealth(m, tp) != redisv1alpha1.HealthHealthy {
			return false
		}
	}
	problems, discovering := topologyProblems(f, o, tp)
	return len(problems) == 0 && !discovering
}

// topologyProblems lists lost members, sentinels and quorum (before the
// formation ever had a master these are expected states of a bring-up), and
// whether sentinels are still discovering their peers, which after a
// bring-up, scale or reset takes seconds and degrades nothing.
func topologyProblems(f *redisv1alpha1.RedisSentinelFormation, o *observation, tp topology.Plan) (problems []problem, discovering bool) {
	var out []problem
	if tp.FailoverInProgress {
		out = append(out, problem{ReasonFailingOver, "Sentinel is failing over (the master the sentinels name now: " + orNone(tp.MasterMember) + ")"})
	} else if masterMember(o, tp) == nil {
		out = append(out, problem{ReasonNoMaster, "no member answers as the master the sentinels name (" + orNone(tp.MasterMember) + ")"})
	}
	var down, sentinelsDown, quorum []string
	peers := int(f.Spec.Members) - 1
	var partial bool
	for _, m := range o.members {
		switch memberHealth(m, tp) {
		case redisv1alpha1.HealthMissing, redisv1alpha1.HealthStopped, redisv1alpha1.HealthUnreachable, redisv1alpha1.HealthPending:
			down = append(down, m.name)
		}
		switch {
		case !m.Running:
		case m.SentinelErr != nil:
			sentinelsDown = append(sentinelsDown, m.name)
		case m.quorumErr != nil:
			quorum = append(quorum, m.name)
		case len(m.OtherNames) > 0, m.View.NumOtherSentinels != peers || m.View.NumReplicas != peers:
			partial = true // the sentinels' view of the master set is still changing
		}
	}
	if len(down) > 0 {
		out = append(out, problem{ReasonMemberDown, "members not serving: " + strings.Join(down, ", ")})
	}
	if len(sentinelsDown) > 0 {
		out = append(out, problem{ReasonSentinelDown, "sentinels not answering: " + strings.Join(sentinelsDown, ", ")})
	}
	if len(quorum) > 0 {
		out = append(out, problem{ReasonQuorumLost, "sentinels reporting no quorum (CKQUORUM): " + strings.Join(quorum, ", ")})
	}
	return out, partial
}

// keepOffsetsUnlessDue keeps the previous replication offsets and lag when
// they are the only change and the last sample is younger than
// offsetRefresh, so an idle formation costs no status write per pass.
func keepOffsetsUnlessDue(before, after *redisv1alpha1.RedisSentinelFormationStatus, now time.Time) {
	if equality.Semantic.DeepEqual(before, after) {
		return
	}
	due := before.ReplicationSampledAt == nil || now.Sub(before.ReplicationSampledAt.Time) >= offsetRefresh
	if !due && equality.Semantic.DeepEqual(withoutOffsets(before), withoutOffsets(after)) {
		after.Members = before.Members
		return
	}
	after.ReplicationSampledAt = timePtr(now)
}

func withoutOffsets(st *redisv1alpha1.RedisSentinelFormationStatus) *redisv1alpha1.RedisSentinelFormationStatus {
	c := st.DeepCopy()
	for i := range c.Members {
		c.Members[i].ReplicationOffset, c.Members[i].LagBytes = 0, 0
	}
	c.ReplicationSampledAt = nil
	return c
}

func joinProblems(ps []problem) string {
	msgs := make([]string, 0, len(ps))
	for _, p := range ps {
		msgs = append(msgs, p.message)
	}
	return strings.Join(msgs, "; ")
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func metricsObservation(f *redisv1alpha1.RedisSentinelFormation, o *observation, p plan) metrics.FormationObservation {
	obs := metrics.FormationObservation{
		Ready:              f.Status.Phase == redisv1alpha1.PhaseReady,
		MembersUp:          int(f.Status.ReadyMembers),
		MembersDesired:     int(f.Spec.Members),
		SentinelsReachable: int(f.Status.Sentinels.Reachable),
		QuorumOK:           f.Status.Sentinels.QuorumOK,
		MasterPresent:      masterMember(o, p.topology) != nil,
	}
	for _, m := range o.members {
		mo := metrics.MemberObservation{Name: m.name, ReplicationLagBytes: -1}
		if m.redisUp() {
			mo.UsedMemoryBytes, mo.MaxMemoryBytes = m.Repl.UsedMemory, m.Repl.Maxmemory
			if st := findMember(f.Status.Members, m.name); st != nil && st.Role != redisv1alpha1.RoleUnknown {
				mo.ReplicationLagBytes = st.LagBytes
			}
		}
		obs.Members = append(obs.Members, mo)
	}
	return obs
}

func findMember(list []redisv1alpha1.MemberStatus, name string) *redisv1alpha1.MemberStatus {
	for i := range list {
		if list[i].Name == name {
			return &list[i]
		}
	}
	return nil
}

func timePtr(t time.Time) *metav1.Time {
	mt := metav1.NewTime(t)
	return &mt
}

func microTime(t time.Time) metav1.MicroTime { return metav1.NewMicroTime(t) }

func microTimePtr(t time.Time) *metav1.MicroTime {
	mt := metav1.NewMicroTime(t)
	return &mt
}

// blockedNotes announce, once, an input problem that blocks the formation
// (a host refusing it, an instance name taken): an Event beside the
// Degraded condition that says the same.
func blockedNotes(before *redisv1alpha1.RedisSentinelFormationStatus, f *redisv1alpha1.RedisSentinelFormation, o *observation) []note {
	if !errors.Is(o.stop, errBlocked) || len(o.problems) == 0 {
		return nil
	}
	was := meta.FindStatusCondition(before.Conditions, redisv1alpha1.ConditionDegraded)
	if was != nil && was.Reason == o.problems[0].reason && strings.HasPrefix(was.Message, o.problems[0].message) {
		return nil
	}
	return []note{{eventType: corev1.EventTypeWarning, reason: o.problems[0].reason, action: "Place", message: o.problems[0].message}}
}
