package controllers

import (
	"strconv"
	"strings"
	"time"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/internal/endpoint"
	"github.com/incusops/redis-sentinel-operator/internal/sentinel"
)

// decideMasterOutage keeps status.masterOutage: when the master the
// sentinels name was lost and how the operator learnt it. When Incus shows
// that master cannot be alive (its container stopped or gone, or running
// without redis-server), it asks a sentinel for SENTINEL FAILOVER at once
// instead of leaving the promotion to Sentinel's down-after: the fast path
// (spec.sentinel.fastFailover). A master whose container runs and whose
// redis-server is active is never failed over here, whatever the sentinels
// or the network say: a partition or a hung process is Sentinel's call.
// It returns what it is doing about a gone master, for Progressing.
func decideMasterOutage(p *plan, f *redisv1alpha1.RedisSentinelFormation, o *observation, now time.Time) string {
	// A stopped member has no address of its own: topology names no
	// member at the master's address, which is the member's home.
	var m *memberObs
	for _, mo := range o.members {
		if !p.topology.Master.IsZero() && mo.Home == p.topology.Master {
			m = mo
		}
	}
	if m == nil || p.topology.FailoverInProgress {
		return ""
	}
	out := f.Status.MasterOutage
	gone := masterGone(o, m)
	sdown := masterSdownAt(f, o.events, p.topology.Master)
	switch {
	case gone == "" && sdown.IsZero():
		if out != nil && masterMember(o, p.topology) != nil {
			p.record = append(p.record, func(st *redisv1alpha1.RedisSentinelFormationStatus) { st.MasterOutage = nil })
		}
		return ""
	case out == nil || out.Member != m.name:
		out = newOutage(f, o, m, gone, sdown, now)
		p.record = append(p.record, func(st *redisv1alpha1.RedisSentinelFormationStatus) { st.MasterOutage = out.DeepCopy() })
	case !sdown.IsZero() && lostBefore(f, sdown).Before(out.LostAt.Time):
		// Recorded when the stop was seen but not heard from Incus: the
		// +sdown that followed dates the loss better.
		lost := microTime(lostBefore(f, sdown))
		p.record = append(p.record, func(st *redisv1alpha1.RedisSentinelFormationStatus) {
			if st.MasterOutage != nil {
				st.MasterOutage.LostAt = lost
			}
		})
	}
	if gone == "" {
		return "" // Sentinel's +sdown alone: the master may be alive behind a partition
	}
	if why := fastFailoverBlocked(f, o, m, p.topology.Master, out); why != "" {
		return "master " + m.name + " is down (" + gone + "); its replacement is left to Sentinel: " + why
	}
	s := sentinelWithQuorum(o, m.name)
	asked := *out
	asked.FailoverRequestedAt, asked.Sentinel = microTimePtr(now), s.name
	// Asked once per outage, whatever the answer: after a refusal (no
	// good replica, a failover already running) Sentinel's own down-after
	// takes over, rather than the operator asking again and again.
	p.record = append(p.record, func(st *redisv1alpha1.RedisSentinelFormationStatus) { st.MasterOutage = asked.DeepCopy() })
	// First in the plan: starting the stopped container again takes
	// longer than the promotion.
	p.actions = append([]action{{kind: actSentinelFailover, member: s.name, target: s.Sentinel,
		reason: "fast failover: master " + m.name + " is down (" + gone + ")"}}, p.actions...)
	p.wakeIn(promotionPoll)
	return "fast failover away from master " + m.name + " (" + gone + ")"
}

// masterGone says why Incus shows m cannot be a live master, or "". A
// frozen container is not gone: thawed, it would serve again.
func masterGone(o *observation, m *memberObs) string {
	if host := o.hostDown(m); host != "" {
		return "its cluster member " + host + " is offline"
	}
	switch {
	case m.instance == nil:
		return "its container is gone"
	case m.instance.Status == "Stopped":
		return "its container is stopped"
	case m.Running && m.Probe != nil && m.Probe.Configured && !m.Probe.RedisActive && !m.redisUp():
		// A server that still answers is not gone, whatever systemd says:
		// one whose stop waits in the handover gate is "deactivating".
		return "its redis-server is not running"
	}
	return ""
}

// masterSdownAt is when a sentinel announced +sdown of the master at addr
// since it became master, if no -sdown followed; zero otherwise.
func masterSdownAt(f *redisv1alpha1.RedisSentinelFormation, events []sentinel.Event, addr endpoint.Endpoint) time.Time {
	var since, at time.Time
	if ms := f.Status.Master; ms != nil && ms.Since != nil {
		since = ms.Since.Time
	}
	want := "master " + f.Spec.MasterName + " " + addr.Host + " " + strconv.Itoa(addr.Port)
	for _, e := range events {
		if e.Time.Before(since) || strings.Join(strings.Fields(e.Payload), " ") != want {
			continue
		}
		switch e.Type {
		case "+sdown":
			if at.IsZero() {
				at = e.Time
			}
		case "-sdown":
			at = time.Time{}
		}
	}
	return at
}

// newOutage is the record of a master outage first seen in this pass. It
// was lost at the earliest of: Incus's stop event, a down-after before the
// sentinels' first +sdown (a sentinel declares a master down after that
// long without an answer), this pass.
func newOutage(f *redisv1alpha1.RedisSentinelFormation, o *observation, m *memberObs, gone string, sdown, now time.Time) *redisv1alpha1.MasterOutageStatus {
	out := &redisv1alpha1.MasterOutageStatus{Member: m.name, DetectedBy: redisv1alpha1.DetectedByIncus}
	lost, detected := now, now
	if gone == "" {
		out.DetectedBy, detected = redisv1alpha1.DetectedBySentinel, sdown
	}
	if stopped, ok := o.instanceStops[m.instanceName]; ok && stopped.Before(lost) {
		lost = stopped
	}
	if !sdown.IsZero() {
		lost, detected = minTime(lost, lostBefore(f, sdown)), minTime(detected, sdown)
	}
	out.LostAt, out.DetectedAt = microTime(lost), microTime(detected)
	return out
}

// lostBefore is when a master announced +sdown at sdown stopped answering.
func lostBefore(f *redisv1alpha1.RedisSentinelFormation, sdown time.Time) time.Time {
	return sdown.Add(-time.Duration(f.Spec.Sentinel.DownAfterMilliseconds) * time.Millisecond)
}

// fastFailoverBlocked says why the fast path may not be taken for the
// gone master m, or "": it is turned off, the formation is paused, it was
// taken already for this outage, a planned failover is under way, no replica was linked and
// caught up when the master was last seen (status) and answers now as its
// replica, or fewer than a majority of sentinels answer.
func fastFailoverBlocked(f *redisv1alpha1.RedisSentinelFormation, o *observation, m *memberObs, addr endpoint.Endpoint, out *redisv1alpha1.MasterOutageStatus) string {
	switch {
	case f.Spec.Sentinel.FastFailover != nil && !*f.Spec.Sentinel.FastFailover:
		return "spec.sentinel.fastFailover is off"
	case paused(f):
		return "the formation is paused (" + redisv1alpha1.AnnotationPause + ")"
	case out.FailoverRequestedAt != nil:
		return "SENTINEL FAILOVER was asked at " + out.FailoverRequestedAt.UTC().Format(time.RFC3339Nano)
	case f.Status.PlannedFailover != nil && f.Status.PlannedFailover.Phase != redisv1alpha1.PlannedFailoverDone:
		return "a planned failover is under way"
	case !replicaWasInSync(f, o, m, addr):
		return "no replica was linked and caught up when the master was last seen"
	case !sentinelMajority(f, o) || sentinelWithQuorum(o, m.name) == nil:
		return "fewer than a majority of sentinels answer"
	}
	return ""
}

// replicaWasInSync reports whether a member that status last recorded as
// the master's linked replica, at most inSyncLag behind, answers now as a
// replica of that master (at addr). Status samples offsets at most every
// offsetRefresh: this is a replica that kept up, not a promise about the
// last write, which is lost with the master whoever promotes the replica.
func replicaWasInSync(f *redisv1alpha1.RedisSentinelFormation, o *observation, master *memberObs, addr endpoint.Endpoint) bool {
	for _, r := range o.members {
		if r == master || !r.redisUp() || r.Repl.IsMaster() || r.Repl.Master != addr {
			continue
		}
		if st := findMember(f.Status.Members, r.name); st != nil && st.Role == redisv1alpha1.RoleReplica &&
			st.MasterLinkUp && st.Health == redisv1alpha1.HealthHealthy && st.LagBytes <= inSyncLag {
			return true
		}
	}
	return false
}

// sentinelMajority reports whether more than half of spec.members'
// sentinels answer: a failover one of them starts reaches a majority.
func sentinelMajority(f *redisv1alpha1.RedisSentinelFormation, o *observation) bool {
	n := 0
	for _, m := range o.members {
		if m.sentinelUp() {
			n++
		}
	}
	return n > int(f.Spec.Members)/2
}
