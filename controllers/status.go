package controllers

import (
	"errors"
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/internal/metrics"
)

// Reasons of the Ready, Degraded and Progressing conditions.
const (
	ReasonReady            = "FormationReady"
	ReasonNotReady         = "NotReady"
	ReasonHealthy          = "Healthy"
	ReasonNoMaster         = "NoMaster"
	ReasonMemberDown       = "MemberDown"
	ReasonSentinelDown     = "SentinelDown"
	ReasonQuorumLost       = "QuorumLost"
	ReasonSentinelsPartial = "SentinelDiscoveryIncomplete"
	ReasonFailingOver      = "FailoverInProgress"
	ReasonProvisioning     = "Provisioning"
	ReasonIdle             = "Idle"
	ReasonBlocked          = "Blocked"
)

// computeStatus fills status from what this reconcile observed; it never
// reports more than was seen.
func (r *FormationReconciler) computeStatus(s *formationState, phaseErr error) {
	f := s.f
	if s.members != nil && s.plan.Source != "" {
		r.observedTopology(s)
	}
	r.recordEvents(s)
	r.setConditions(s, phaseErr)
	if phaseErr == nil {
		f.Status.ObservedGeneration = f.Generation
	}
	r.Metrics.ObserveFormation(f.Namespace, f.Name, metricsObservation(s))
}

// observedTopology writes members, master, sentinels and failovers.
func (r *FormationReconciler) observedTopology(s *formationState) {
	f := s.f
	r.recordPendingSwitches(s)
	statuses := make([]redisv1alpha1.MemberStatus, 0, len(s.members))
	var ready int32
	var masterOffset int64
	if mm := s.masterMember(); mm != nil {
		masterOffset = mm.obs.Repl.Offset
	}
	for _, m := range s.members {
		st := memberStatus(s, m, masterOffset)
		if st.Health == redisv1alpha1.HealthHealthy {
			ready++
		}
		statuses = append(statuses, st)
	}
	f.Status.Members = statuses
	f.Status.ReadyMembers = ready

	var reachable int32
	quorumOK := true
	for _, m := range s.members {
		if m.obs.Running && m.obs.SentinelErr == nil {
			reachable++
			quorumOK = quorumOK && m.quorumErr == nil
		}
	}
	f.Status.Sentinels = redisv1alpha1.SentinelsStatus{Reachable: reachable, QuorumOK: reachable > 0 && quorumOK}
	r.updateMaster(s)
}

// masterMember is the plan's master if its redis-server answers as master.
func (s *formationState) masterMember() *memberState {
	for _, m := range s.members {
		if m.name == s.plan.MasterMember && m.obs.Running && m.obs.RedisErr == nil && m.obs.Repl.IsMaster() {
			return m
		}
	}
	return nil
}

func memberStatus(s *formationState, m *memberState, masterOffset int64) redisv1alpha1.MemberStatus {
	st := redisv1alpha1.MemberStatus{Name: m.name, Instance: m.name, Role: redisv1alpha1.RoleUnknown, Address: memberAddress(s.f, m)}
	if m.instance != nil {
		st.InstanceState = m.instance.Status
	}
	o := m.obs
	st.SentinelUp = o.Running && o.SentinelErr == nil
	if o.Running && o.RedisErr == nil {
		st.ReplicationOffset = o.Repl.Offset
		if o.Repl.IsMaster() {
			st.Role = redisv1alpha1.RoleMaster
		} else {
			st.Role = redisv1alpha1.RoleReplica
			st.MasterLinkUp = o.Repl.LinkUp
			st.LagBytes = max(0, masterOffset-o.Repl.Offset)
		}
	}
	st.Health = memberHealth(s, m)
	return st
}

// memberAddress is where the member lives: its running container's address,
// else the address pinned on its eth0, else the last one status recorded.
// A stopped or deleted container keeps its address, so it is rebuilt there.
func memberAddress(f *redisv1alpha1.RedisSentinelFormation, m *memberState) string {
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

func memberHealth(s *formationState, m *memberState) redisv1alpha1.MemberHealth {
	o := m.obs
	switch {
	case m.instance == nil:
		return redisv1alpha1.HealthMissing
	case m.instance.Status != "Running":
		return redisv1alpha1.HealthStopped
	case !o.Running || (o.Probe != nil && !o.Probe.Configured):
		return redisv1alpha1.HealthPending
	case o.RedisErr != nil:
		return redisv1alpha1.HealthUnreachable
	case o.Repl.IsMaster():
		if m.name == s.plan.MasterMember {
			return redisv1alpha1.HealthHealthy
		}
		return redisv1alpha1.HealthSyncing // a second master, being demoted
	case o.Repl.LinkUp && o.Redis != s.plan.Master && o.Repl.Master == s.plan.Master:
		return redisv1alpha1.HealthHealthy
	default:
		return redisv1alpha1.HealthSyncing
	}
}

// updateMaster records the master Sentinel's majority names and counts a
// switch away from the previously recorded one as a failover.
func (r *FormationReconciler) updateMaster(s *formationState) {
	f := s.f
	p := s.plan
	switch {
	case p.MasterMember == "" || !p.Authoritative:
		return // keep the last known master rather than guess
	case p.FailoverInProgress || s.recordedSwitches > 0:
		// The observation predates a switch recorded from Sentinel's
		// event in this pass, or was taken while Sentinel was switching.
		return
	}
	now := metav1.NewTime(r.now())
	prev := f.Status.Master
	if prev != nil && prev.Member == p.MasterMember && prev.Address == p.Master.Host {
		return
	}
	f.Status.Master = &redisv1alpha1.MasterStatus{Member: p.MasterMember, Address: p.Master.Host, Port: int32(p.Master.Port), Since: &now}
	if prev == nil || prev.Member == p.MasterMember {
		return
	}
	// Seen in Sentinel's state before (or without) its +switch-master event:
	// the outage's duration is unknown here.
	r.countFailover(s, prev.Member, p.MasterMember, now.Time, 0)
}

// setConditions derives Ready, Degraded, Progressing and the phase.
func (r *FormationReconciler) setConditions(s *formationState, phaseErr error) {
	f := s.f
	topo, discovering := topologyProblems(s)
	problems := append(s.problems, topo...)
	if phaseErr != nil && len(problems) == 0 && !errors.Is(phaseErr, errBlocked) {
		problems = append(problems, problem{"ReconcileError", phaseErr.Error()})
	}
	ready := phaseErr == nil && len(problems) == 0 && !discovering && s.plan.Source != "" && !s.plan.FailoverInProgress &&
		s.masterMember() != nil && int(f.Status.ReadyMembers) == len(s.members) && len(s.members) == int(f.Spec.Members)
	secretsBlocked := meta.IsStatusConditionFalse(f.Status.Conditions, redisv1alpha1.ConditionSecretsValid)
	bootstrapped := f.Status.Master != nil

	set := func(t string, status bool, reason, message string) {
		c := metav1.Condition{Type: t, Status: metav1.ConditionFalse, Reason: reason, Message: message, ObservedGeneration: f.Generation}
		if status {
			c.Status = metav1.ConditionTrue
		}
		meta.SetStatusCondition(&f.Status.Conditions, c)
	}

	switch {
	case ready:
		set(redisv1alpha1.ConditionReady, true, ReasonReady, fmt.Sprintf("master %s with %d linked replicas; %d sentinels agree, quorum OK", s.plan.MasterMember, len(s.members)-1, f.Status.Sentinels.Reachable))
	case secretsBlocked:
		set(redisv1alpha1.ConditionReady, false, ReasonBlocked, "waiting for valid password Secrets (see SecretsValid)")
	case len(problems) > 0:
		set(redisv1alpha1.ConditionReady, false, problems[0].reason, problems[0].message)
	case discovering:
		set(redisv1alpha1.ConditionReady, false, ReasonSentinelsPartial, fmt.Sprintf("not every sentinel knows its %d peers and the %d replicas yet", f.Spec.Members-1, f.Spec.Members-1))
	default:
		set(redisv1alpha1.ConditionReady, false, ReasonNotReady, "members are being created, configured or synced")
	}

	// Before the first master, lost members are a bring-up in progress;
	// Incus or input problems (s.problems) degrade at any time.
	degraded := len(problems) > 0 && (bootstrapped || len(s.problems) > 0)
	if degraded {
		set(redisv1alpha1.ConditionDegraded, true, problems[0].reason, joinProblems(problems))
	} else {
		set(redisv1alpha1.ConditionDegraded, false, ReasonHealthy, "no member, sentinel or quorum is lost")
	}

	progressing := s.progressing
	if !ready && progressing == "" && !degraded && !secretsBlocked {
		progressing = "waiting for members to come up and sync"
	}
	if progressing != "" {
		set(redisv1alpha1.ConditionProgressing, true, ReasonProvisioning, progressing)
	} else {
		set(redisv1alpha1.ConditionProgressing, false, ReasonIdle, "nothing to do")
	}

	switch {
	case secretsBlocked || errors.Is(phaseErr, errBlocked):
		f.Status.Phase = redisv1alpha1.PhaseBlocked
	case s.plan.FailoverInProgress:
		f.Status.Phase = redisv1alpha1.PhaseFailingOver
	case ready:
		f.Status.Phase = redisv1alpha1.PhaseReady
	case degraded:
		f.Status.Phase = redisv1alpha1.PhaseDegraded
	default:
		f.Status.Phase = redisv1alpha1.PhaseProvisioning
	}
}

// topologyProblems lists lost members, sentinels and quorum (before the
// formation ever had a master these are expected states of a bring-up), and
// whether sentinels are still discovering their peers, which after a
// bring-up, scale or reset takes seconds and degrades nothing.
func topologyProblems(s *formationState) (problems []problem, discovering bool) {
	if s.plan.Source == "" {
		return nil, false
	}
	var out []problem
	if s.plan.FailoverInProgress {
		out = append(out, problem{ReasonFailingOver, "Sentinel is failing over from " + s.plan.MasterMember})
	} else if s.masterMember() == nil {
		out = append(out, problem{ReasonNoMaster, "no member answers as the master the sentinels name (" + orNone(s.plan.MasterMember) + ")"})
	}
	var down, sentinelsDown, quorum []string
	peers := int(s.f.Spec.Members) - 1
	var partial bool
	for _, m := range s.members {
		switch memberHealth(s, m) {
		case redisv1alpha1.HealthMissing, redisv1alpha1.HealthStopped, redisv1alpha1.HealthUnreachable, redisv1alpha1.HealthPending:
			down = append(down, m.name)
		}
		switch {
		case !m.obs.Running:
		case m.obs.SentinelErr != nil:
			sentinelsDown = append(sentinelsDown, m.name)
		case m.quorumErr != nil:
			quorum = append(quorum, m.name)
		case m.obs.View.NumOtherSentinels != peers || m.obs.View.NumReplicas != peers:
			partial = true
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

func metricsObservation(s *formationState) metrics.FormationObservation {
	f := s.f
	obs := metrics.FormationObservation{
		Ready:              f.Status.Phase == redisv1alpha1.PhaseReady,
		MembersUp:          int(f.Status.ReadyMembers),
		MembersDesired:     int(f.Spec.Members),
		SentinelsReachable: int(f.Status.Sentinels.Reachable),
		QuorumOK:           f.Status.Sentinels.QuorumOK,
		MasterPresent:      s.masterMember() != nil,
	}
	for _, m := range s.members {
		mo := metrics.MemberObservation{Name: m.name, ReplicationLagBytes: -1}
		if m.obs.Running && m.obs.RedisErr == nil {
			mo.UsedMemoryBytes, mo.MaxMemoryBytes = m.obs.Repl.UsedMemory, m.obs.Repl.Maxmemory
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
