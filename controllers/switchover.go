package controllers

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/internal/topology"
)

// Reasons of status.switchover and the Switchover condition. A refusal's
// reason says what would have to change for the request to be honoured.
const (
	ReasonSwitchoverAccepted  = "Accepted"
	ReasonSwitchoverSucceeded = "Switched"
	ReasonUnknownMember       = "UnknownMember"
	ReasonTargetIsMaster      = "TargetIsMaster"
	ReasonTargetNotInSync     = "TargetNotInSync"
	// ReasonTargetNotPromotable: the target's replica-priority is 0, which
	// Sentinel never promotes (set by hand: the operator leaves it).
	ReasonTargetNotPromotable = "TargetNotPromotable"
	ReasonPaused              = "Paused"
	// ReasonPrioritiesNotSeen: the sentinels did not report the lowered
	// replica priorities within switchoverTimeout.
	ReasonPrioritiesNotSeen = "PrioritiesNotSeen"
	// ReasonPlannedFailoverGivenUp: writes were held, then released
	// without a promotion (a replica behind, Sentinel refusing).
	ReasonPlannedFailoverGivenUp = "PlannedFailoverGivenUp"
	// ReasonOtherPromoted: the master moved, but not to the requested
	// member (Sentinel failed over on its own meanwhile).
	ReasonOtherPromoted      = "OtherMemberPromoted"
	ReasonSwitchoverTimedOut = "TimedOut"
	ReasonResumed            = "Resumed"
)

const (
	// switchoverTimeout bounds an accepted switchover before writes are
	// held: a sentinel reads replica priorities from INFO every 10 s.
	switchoverTimeout = time.Minute
	// inSyncLag is how far behind the master a replica may be observed
	// and still count as in sync (a switchover's target, the fast path's
	// replica): offsets of a formation under writes are read at slightly
	// different times. A switchover's write hold makes the catch-up exact
	// before Sentinel is asked.
	inSyncLag = 1 << 20
	// prioritiesPoll is how often a switchover checks whether the
	// sentinels read the lowered priorities.
	prioritiesPoll = time.Second
	// replicaPriorityKey is redis-server's setting Sentinel picks a
	// replica by: the lowest non-zero one, never 0.
	replicaPriorityKey = "replica-priority"
)

// paused reports whether the pause annotation holds the formation's changes
// back (any value but "false").
func paused(f *redisv1alpha1.RedisSentinelFormation) bool {
	v, ok := f.Annotations[redisv1alpha1.AnnotationPause]
	return ok && v != "false"
}

// withhold drops from a plan every action that would change the formation's
// instances, servers or Secrets (all but adding the finalizer, which
// protects a later deletion), while its status bookkeeping stays. A write
// hold of a planned failover under way is not released: CLIENT PAUSE ends
// by itself after writeHold.
func withhold(p *plan) {
	kept := p.actions[:0:0]
	for _, a := range p.actions {
		if a.kind == actAddFinalizer {
			kept = append(kept, a)
			continue
		}
		p.withheld = append(p.withheld, a)
	}
	p.actions = kept
	p.progressing, p.requeueNow, p.requeue = "", false, 0
}

// decideSwitchover handles the switchover annotation and returns why the
// master role must move now, if it must (the planned failover's reason):
//
//   - a new request (a value other than status.switchover.request) is
//     refused with its reason, changing nothing, or accepted: for a named
//     target the other replicas' replica-priority is lowered to 0 so that
//     Sentinel can only promote the target;
//   - an accepted one waits until every sentinel reports those priorities
//     (Sentinel reads them from INFO every 10 s), then hands over to the
//     planned failover (hold writes, catch up, SENTINEL FAILOVER, demote);
//   - it ends once the master moved, or fails when the planned failover
//     was given up or the conditions were lost before writes were held;
//   - lowered priorities are given back once it ended.
//
// Every step is read from status, so a restarted operator carries on.
func decideSwitchover(p *plan, f *redisv1alpha1.RedisSentinelFormation, o *observation, now time.Time) string {
	sw := f.Status.Switchover
	restorePriorities(p, sw, o)
	if sw != nil && sw.Phase == redisv1alpha1.SwitchoverInProgress {
		return carryOnSwitchover(p, f, o, now)
	}
	want := strings.TrimSpace(f.Annotations[redisv1alpha1.AnnotationSwitchover])
	switch {
	case want == "" && sw != nil && sw.Request != "":
		p.record = append(p.record, func(st *redisv1alpha1.RedisSentinelFormationStatus) {
			if st.Switchover != nil {
				st.Switchover.Request = ""
			}
		})
		return ""
	case want == "" || (sw != nil && sw.Request == want):
		return ""
	}
	target := want
	if want == redisv1alpha1.SwitchoverAny {
		target = ""
	}
	from := ""
	if m := masterMember(o, p.topology); m != nil {
		from = m.name
	}
	reason, message := ReasonPaused, "the formation is paused ("+redisv1alpha1.AnnotationPause+"); remove the pause first"
	if !paused(f) {
		reason, message = switchoverRefusal(f, o, p.topology, want)
	}
	if reason != "" {
		p.record = append(p.record, func(st *redisv1alpha1.RedisSentinelFormationStatus) {
			startSwitchover(st, want, from, target, now)
			endSwitchover(st, redisv1alpha1.SwitchoverRefused, reason, message+"; nothing was changed", now)
		})
		return ""
	}
	how := "Sentinel promotes the in-sync replica it prefers"
	if target != "" {
		how = "the other replicas' replica-priority is set to 0 until the sentinels report it, then writes are held while " + target + " catches up"
	}
	p.record = append(p.record, func(st *redisv1alpha1.RedisSentinelFormationStatus) {
		startSwitchover(st, want, from, target, now)
		st.Switchover.Phase, st.Switchover.Reason = redisv1alpha1.SwitchoverInProgress, ReasonSwitchoverAccepted
		st.Switchover.Message = fmt.Sprintf("switchover from %s to %s accepted: %s", from, orAny(target), how)
	})
	lowerPriorities(p, o, from, target)
	p.progressing = "switchover from " + from + " to " + orAny(target)
	p.requeueNow = true
	return ""
}

// carryOnSwitchover moves an accepted switchover one step on.
func carryOnSwitchover(p *plan, f *redisv1alpha1.RedisSentinelFormation, o *observation, now time.Time) string {
	sw := f.Status.Switchover
	tp := p.topology
	if masterMovedFrom(tp, sw.From) {
		promoted := tp.MasterMember
		outcome, reason := redisv1alpha1.SwitchoverSucceeded, ReasonSwitchoverSucceeded
		message := fmt.Sprintf("master moved from %s to %s", sw.From, promoted)
		if sw.To != "" && sw.To != promoted {
			outcome, reason = redisv1alpha1.SwitchoverFailed, ReasonOtherPromoted
			message = fmt.Sprintf("master moved from %s to %s, not to the requested %s", sw.From, promoted, sw.To)
		}
		p.record = append(p.record, func(st *redisv1alpha1.RedisSentinelFormationStatus) {
			if st.Switchover != nil {
				st.Switchover.To = promoted
			}
			endSwitchover(st, outcome, reason, message, now)
		})
		p.requeueNow = len(sw.LoweredPriorities) > 0
		return ""
	}
	need := fmt.Sprintf("switchover from %s to %s requested with %s", sw.From, orAny(sw.To), redisv1alpha1.AnnotationSwitchover)
	pf := f.Status.PlannedFailover
	if pf != nil && pf.Phase != redisv1alpha1.PlannedFailoverDone {
		return need // writes are held: the planned failover carries on
	}
	fail := func(reason, message string) string {
		p.record = append(p.record, func(st *redisv1alpha1.RedisSentinelFormationStatus) {
			endSwitchover(st, redisv1alpha1.SwitchoverFailed, reason, message, now)
		})
		p.requeueNow = len(sw.LoweredPriorities) > 0
		return ""
	}
	timedOut := now.Sub(sw.StartedAt.Time) > switchoverTimeout
	// Once this switchover's planned failover ended (pf started after the
	// request: StartedAt has whole seconds), or while the sentinels do not
	// agree on a master, the master is whoever they name next: the
	// promoted replica answers as master before every sentinel names it.
	// A planned failover is never asked twice for one request.
	ours := pf != nil && !pf.HoldStartedAt.Time.Before(sw.StartedAt.Time)
	if ours || tp.FailoverInProgress || !tp.Authoritative || tp.MasterMember == "" {
		if timedOut {
			reason, message := ReasonFailingOver, "the sentinels did not agree on a master within "+switchoverTimeout.String()
			if ours {
				reason, message = ReasonPlannedFailoverGivenUp, "writes were held and Sentinel asked, but the sentinels named no new master within "+switchoverTimeout.String()
			}
			return fail(reason, message)
		}
		p.progressing = need + ": waiting for the sentinels to name the master"
		p.wakeIn(promotionPoll)
		return ""
	}
	never := "; writes were never held and the master did not move"
	if paused(f) {
		return fail(ReasonPaused, "the formation was paused ("+redisv1alpha1.AnnotationPause+")"+never)
	}
	want := sw.To
	if want == "" {
		want = redisv1alpha1.SwitchoverAny
	}
	if reason, message := switchoverRefusal(f, o, tp, want); reason != "" {
		return fail(reason, message+never)
	}
	if timedOut {
		return fail(ReasonPrioritiesNotSeen, fmt.Sprintf("the sentinels did not report the replica priorities within %s", switchoverTimeout)+never)
	}
	p.progressing = need
	if lowerPriorities(p, o, sw.From, sw.To) {
		p.wakeIn(prioritiesPoll)
		return ""
	}
	if waiting := sentinelsNotSeeing(o, sw); waiting != "" {
		p.progressing = need + ": waiting for the sentinel of " + waiting + " to read the replica priorities (from INFO, every 10 s)"
		p.wakeIn(prioritiesPoll)
		return ""
	}
	return need
}

// switchoverRefusal says why a switchover to want (a member or "any")
// cannot be honoured now, or "" when it can.
func switchoverRefusal(f *redisv1alpha1.RedisSentinelFormation, o *observation, tp topology.Plan, want string) (reason, message string) {
	if pf := f.Status.PlannedFailover; tp.FailoverInProgress || (pf != nil && pf.Phase != redisv1alpha1.PlannedFailoverDone) || f.Status.MasterOutage != nil {
		return ReasonFailingOver, "a failover is in progress; ask again once the formation is Ready"
	}
	master := masterMember(o, tp)
	if master == nil {
		return ReasonNotReady, "no member answers as the master the sentinels name (" + orNone(tp.MasterMember) + ")"
	}
	var candidates []*memberObs
	if want == redisv1alpha1.SwitchoverAny {
		for _, m := range o.members {
			if m != master {
				candidates = append(candidates, m)
			}
		}
	} else {
		i := slices.IndexFunc(o.members, func(m *memberObs) bool { return m.name == want })
		switch {
		case i < 0:
			names := make([]string, 0, len(o.members))
			for _, m := range o.members {
				names = append(names, m.name)
			}
			return ReasonUnknownMember, fmt.Sprintf("%s=%q names no member of this formation (members: %s, or %q)", redisv1alpha1.AnnotationSwitchover, want, strings.Join(names, ", "), redisv1alpha1.SwitchoverAny)
		case o.members[i] == master:
			return ReasonTargetIsMaster, want + " is already the master"
		}
		candidates = []*memberObs{o.members[i]}
	}
	var why []string
	for _, m := range candidates {
		if reason := notInSync(m, master); reason != "" {
			why = append(why, m.name+" "+reason)
		} else if m.Repl.Priority == 0 {
			why = append(why, m.name+" has replica-priority 0, which Sentinel never promotes")
		}
	}
	if len(why) == len(candidates) {
		if len(candidates) == 1 && notInSync(candidates[0], master) == "" {
			return ReasonTargetNotPromotable, why[0]
		}
		if want != redisv1alpha1.SwitchoverAny {
			return ReasonTargetNotInSync, why[0] + ": only a replica linked to the master " + master.name + " and caught up with it can take over without losing writes"
		}
		return ReasonTargetNotInSync, "no replica to promote is in sync with the master " + master.name + ": " + strings.Join(why, "; ")
	}
	if !whole(f, o, tp) || len(outdated(f, o.members)) > 0 || len(o.problems) > 0 {
		return ReasonNotReady, "the formation is not Ready (a member, sentinel or quorum is lost, or a rollout or scale is under way); ask again once it is"
	}
	return "", ""
}

// notInSync says why m could not take over from master without losing
// writes, or "" when it can.
func notInSync(m, master *memberObs) string {
	switch {
	case !m.redisUp():
		return "does not answer (container " + orNone(instanceState(m)) + ")"
	case m.Repl.IsMaster():
		return "answers as a master"
	case m.Repl.Master != master.Redis || !m.Repl.LinkUp:
		return "is not linked to the master"
	case master.Repl.Offset-m.Repl.Offset > inSyncLag:
		return fmt.Sprintf("is %d bytes behind", master.Repl.Offset-m.Repl.Offset)
	}
	return ""
}

func instanceState(m *memberObs) string {
	if m.instance == nil {
		return "missing"
	}
	return m.instance.Status
}

// lowerPriorities sets replica-priority 0 on every answering replica but
// target (and from, the master), recording the priority each had, so that
// Sentinel can only promote target. It reports whether it decided any.
// For "any" (target "") nothing is lowered.
func lowerPriorities(p *plan, o *observation, from, target string) bool {
	if target == "" {
		return false
	}
	lowered := false
	for _, m := range o.members {
		if m.name == from || m.name == target || !m.redisUp() || m.Repl.IsMaster() || m.Repl.Priority == 0 {
			continue
		}
		name, prev := m.name, int32(m.Repl.Priority)
		p.add(action{kind: actSetPriority, member: name, target: m.Redis, settings: map[string]string{replicaPriorityKey: "0"},
			reason: "so that Sentinel promotes only " + target + " (given back after the switchover)",
			record: func(st *redisv1alpha1.RedisSentinelFormationStatus) {
				if st.Switchover != nil && !slices.ContainsFunc(st.Switchover.LoweredPriorities, func(r redisv1alpha1.ReplicaPriority) bool { return r.Member == name }) {
					st.Switchover.LoweredPriorities = append(st.Switchover.LoweredPriorities, redisv1alpha1.ReplicaPriority{Member: name, Priority: prev})
				}
			}})
		lowered = true
	}
	return lowered
}

// sentinelsNotSeeing names a sentinel with quorum that does not report yet
// the switchover's priorities (the lowered ones at 0, the target's above
// 0), or "" when every one does: whichever is asked for SENTINEL FAILOVER
// then promotes the target.
func sentinelsNotSeeing(o *observation, sw *redisv1alpha1.SwitchoverStatus) string {
	if len(sw.LoweredPriorities) == 0 {
		return ""
	}
	target := o.member(sw.To)
	for _, s := range o.members {
		if !s.Running || s.SentinelErr != nil || s.quorumErr != nil {
			continue
		}
		if s.replicaPriorities == nil || target == nil || s.replicaPriorities[target.Redis] <= 0 {
			return s.name
		}
		for _, r := range sw.LoweredPriorities {
			if m := o.member(r.Member); m != nil && m.Running {
				if prio, known := s.replicaPriorities[m.Redis]; known && prio != 0 {
					return s.name
				}
			}
		}
	}
	return ""
}

// restorePriorities gives the replicas lowered by a switchover that ended
// their replica-priority back, each as soon as its redis-server answers.
// A member gone since is dropped from the record (a rebuilt one starts
// with the rendered priority).
func restorePriorities(p *plan, sw *redisv1alpha1.SwitchoverStatus, o *observation) {
	if sw == nil || sw.Phase == redisv1alpha1.SwitchoverInProgress {
		return
	}
	for _, r := range sw.LoweredPriorities {
		name := r.Member
		drop := func(st *redisv1alpha1.RedisSentinelFormationStatus) {
			if st.Switchover != nil {
				st.Switchover.LoweredPriorities = slices.DeleteFunc(st.Switchover.LoweredPriorities, func(r redisv1alpha1.ReplicaPriority) bool { return r.Member == name })
			}
		}
		m := o.member(name)
		switch {
		case m == nil:
			p.record = append(p.record, drop)
		case m.redisUp():
			p.add(action{kind: actSetPriority, member: name, target: m.Redis, settings: map[string]string{replicaPriorityKey: strconv.Itoa(int(r.Priority))},
				reason: "the switchover ended: its replica-priority is given back", record: drop})
		}
	}
}

func startSwitchover(st *redisv1alpha1.RedisSentinelFormationStatus, request, from, to string, now time.Time) {
	if st.Switchover == nil {
		st.Switchover = &redisv1alpha1.SwitchoverStatus{}
	}
	sw := st.Switchover
	sw.Request, sw.From, sw.To, sw.StartedAt, sw.FinishedAt = request, from, to, timePtr(now), nil
}

// endSwitchover records the outcome of the switchover in progress (or just
// refused).
func endSwitchover(st *redisv1alpha1.RedisSentinelFormationStatus, phase redisv1alpha1.SwitchoverPhase, reason, message string, now time.Time) {
	if st.Switchover == nil {
		return
	}
	sw := st.Switchover
	sw.Phase, sw.Reason, sw.Message, sw.FinishedAt = phase, reason, message, timePtr(now)
}

// failSwitchoverInProgress is the record of a planned failover given up:
// the switchover that asked for it failed (it is not retried).
func failSwitchoverInProgress(why string, now time.Time) func(*redisv1alpha1.RedisSentinelFormationStatus) {
	return func(st *redisv1alpha1.RedisSentinelFormationStatus) {
		if sw := st.Switchover; sw != nil && sw.Phase == redisv1alpha1.SwitchoverInProgress {
			endSwitchover(st, redisv1alpha1.SwitchoverFailed, ReasonPlannedFailoverGivenUp, "writes were held, then released without a promotion: "+why+"; the master did not move", now)
		}
	}
}

func orAny(target string) string {
	if target == "" {
		return "any in-sync replica"
	}
	return target
}

// setSwitchoverCondition mirrors status.switchover's outcome and returns
// the Event of a new one: Normal when accepted or done, Warning when
// refused or failed.
func setSwitchoverCondition(f *redisv1alpha1.RedisSentinelFormation, before *redisv1alpha1.SwitchoverStatus, now time.Time) []note {
	sw := f.Status.Switchover
	if sw == nil {
		return nil
	}
	status := metav1.ConditionTrue
	eventType := corev1.EventTypeNormal
	if sw.Phase == redisv1alpha1.SwitchoverRefused || sw.Phase == redisv1alpha1.SwitchoverFailed {
		status, eventType = metav1.ConditionFalse, corev1.EventTypeWarning
	}
	meta.SetStatusCondition(&f.Status.Conditions, metav1.Condition{Type: redisv1alpha1.ConditionSwitchover, Status: status, Reason: sw.Reason,
		Message: string(sw.Phase) + ": " + sw.Message, ObservedGeneration: f.Generation, LastTransitionTime: metav1.NewTime(now)})
	if before != nil && before.Phase == sw.Phase && before.Reason == sw.Reason && before.StartedAt.Equal(sw.StartedAt) {
		return nil
	}
	return []note{{eventType: eventType, reason: "Switchover" + string(sw.Phase), action: "Switchover", member: sw.To, message: sw.Message}}
}

// setPausedCondition says whether the pause annotation holds changes back,
// and what this pass withheld; it returns an Event when the formation is
// paused or resumed. Never paused formations carry no Paused condition.
func setPausedCondition(f *redisv1alpha1.RedisSentinelFormation, withheld []action, now time.Time) []note {
	was := meta.IsStatusConditionTrue(f.Status.Conditions, redisv1alpha1.ConditionPaused)
	c := metav1.Condition{Type: redisv1alpha1.ConditionPaused, Status: metav1.ConditionTrue, Reason: ReasonPaused, ObservedGeneration: f.Generation, LastTransitionTime: metav1.NewTime(now)}
	switch {
	case paused(f):
		c.Message = "the " + redisv1alpha1.AnnotationPause + " annotation holds every change to instances, servers and Secrets back until it is removed"
		if len(withheld) > 0 {
			c.Message += "; withheld: " + describeActions(withheld)
		}
	case meta.FindStatusCondition(f.Status.Conditions, redisv1alpha1.ConditionPaused) == nil:
		return nil
	default:
		c.Status, c.Reason, c.Message = metav1.ConditionFalse, ReasonResumed, "the "+redisv1alpha1.AnnotationPause+" annotation was removed; the operator acts again"
	}
	meta.SetStatusCondition(&f.Status.Conditions, c)
	if was == (c.Status == metav1.ConditionTrue) {
		return nil
	}
	return []note{{eventType: corev1.EventTypeNormal, reason: c.Reason, action: "Pause", message: c.Message}}
}

// describeActions lists actions as "Kind member", in order.
func describeActions(actions []action) string {
	out := make([]string, 0, len(actions))
	for _, a := range actions {
		kind := string(a.kind)
		if a.kind == actTopology {
			kind = string(a.topology.Kind)
		}
		out = append(out, strings.TrimSpace(kind+" "+a.member))
	}
	return strings.Join(out, ", ")
}

// switchoverAwaitsSentinels reports whether a pass must read the sentinels'
// view of the replica priorities: a switchover lowered some.
func switchoverAwaitsSentinels(f *redisv1alpha1.RedisSentinelFormation) bool {
	sw := f.Status.Switchover
	return sw != nil && sw.Phase == redisv1alpha1.SwitchoverInProgress && len(sw.LoweredPriorities) > 0
}
