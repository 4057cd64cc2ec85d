package controllers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/incusops/redis-sentinel-operator/internal/endpoint"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
)

// plannedFailoverPause keeps a planned failover from being asked for twice
// while Sentinel carries out the first.
const plannedFailoverPause = 30 * time.Second

// templateDigest fingerprints the spec fields a member's container is built
// from; a container with another digest is replaced, one member at a time.
func templateDigest(f *redisv1alpha1.RedisSentinelFormation, index int) string {
	spec := f.Spec.Incus
	var target string
	if index <= len(spec.Targets) {
		target = spec.Targets[index-1]
	}
	fields := []string{spec.Image, strings.Join(spec.Profiles, ","), spec.Network, spec.StoragePool, spec.Project, target, spec.Limits.CPU, spec.Limits.Memory}
	sum := sha256.Sum256([]byte(strings.Join(fields, "\x00")))
	return hex.EncodeToString(sum[:8])
}

// outdated lists members whose container was built from other spec fields.
func (s *formationState) outdated() []*memberState {
	var out []*memberState
	for _, m := range s.members {
		if m.instance != nil && m.instance.Config[keyTemplate] != templateDigest(s.f, m.index) {
			out = append(out, m)
		}
	}
	return out
}

// rolloutStep replaces at most one outdated member per pass, and only while
// the formation is whole (Ready as this process computed it at the last
// pass, and every member present):
// replicas first, each rebuilt and synced before the next; the master last,
// after a planned failover moved the role away. A deleted member is
// re-created at once by the caller.
func (r *FormationReconciler) rolloutStep(ctx context.Context, s *formationState) error {
	outdated := s.outdated()
	var phase redisv1alpha1.FormationPhase
	r.remember(client.ObjectKeyFromObject(s.f), func(m *memory) { phase = m.phase })
	if len(outdated) == 0 || phase != redisv1alpha1.PhaseReady || s.anyInstanceMissing() || len(s.leaving) > 0 {
		return nil
	}
	master := ""
	if s.f.Status.Master != nil {
		master = s.f.Status.Master.Member
	}
	for _, m := range outdated {
		if m.name == master {
			continue
		}
		s.progressing = fmt.Sprintf("replacing member %s (%d of %d members to replace)", m.name, len(outdated), len(s.members))
		r.event(s.f, corev1.EventTypeNormal, "ReplacingMember", "Rollout", m.name, "%s: its container is rebuilt from the new spec; it rejoins as a replica", m.name)
		s.log.Info("replacing an outdated replica; the next member waits until it has synced", "member", m.name, "remaining", len(outdated))
		if err := s.incus.DeleteInstance(ctx, m.name); err != nil {
			return fmt.Errorf("deleting outdated member %s: %w", m.name, err)
		}
		m.instance = nil
		return nil
	}
	// Only the master is left: move the role first.
	s.plannedFailover = "planned failover away from " + master + " before replacing it"
	return nil
}

// plannedFailover moves the master role without losing acknowledged
// writes: it holds writes on the master, waits until every linked replica
// has everything, and only then asks a healthy sentinel to fail over.
// Without the hold, SENTINEL FAILOVER promotes a replica while the master
// still takes writes that other replicas acknowledge; those replicas then
// need a full resync from the new master and drop the writes. With equal
// offsets they resync partially, at once, and the new master has linked
// replicas (min-replicas-to-write) immediately. Nothing is asked while a
// failover runs or moments after the last request.
func (r *FormationReconciler) plannedFailover(ctx context.Context, s *formationState, reason string) error {
	if s.plan.FailoverInProgress {
		return nil
	}
	key := client.ObjectKeyFromObject(s.f)
	recent := false
	r.remember(key, func(m *memory) { recent = r.now().Sub(m.lastPlannedFailover) < plannedFailoverPause })
	if recent {
		return nil
	}
	master := s.masterMember()
	var sentinel *memberState
	for _, m := range s.members {
		if m.obs.Running && m.obs.SentinelErr == nil && m.quorumErr == nil {
			sentinel = m
			break
		}
	}
	if master == nil || sentinel == nil {
		return fmt.Errorf("no answering master, or no sentinel with quorum, for the planned failover (%s)", reason)
	}
	holdEnds := time.Now().Add(writeHold)
	if err := s.admin.PauseWrites(ctx, master.obs.Redis, writeHold); err != nil {
		return err
	}
	if err := r.waitReplicasCaughtUp(ctx, s, master); err != nil {
		_ = s.admin.ResumeWrites(ctx, master.obs.Redis)
		return err
	}
	if err := s.admin.SentinelFailover(ctx, sentinel.obs.Sentinel, s.f.Spec.MasterName); err != nil {
		_ = s.admin.ResumeWrites(ctx, master.obs.Redis)
		return err
	}
	r.remember(key, func(mem *memory) { mem.lastPlannedFailover = r.now() })
	r.releaseHold(ctx, s, master, holdEnds)
	s.progressing = reason
	r.event(s.f, corev1.EventTypeNormal, "PlannedFailover", "Rollout", master.name, "%s (writes held until the replicas caught up; asked sentinel %s)", reason, sentinel.name)
	s.log.Info("planned failover requested", "reason", reason, "sentinel", sentinel.name)
	return nil
}

// writeHold bounds how long clients wait on a planned failover: catching up
// takes milliseconds, Sentinel's promotion about a second.
const writeHold = 3 * time.Second

// releaseHold ends the write hold on the old master as soon as Sentinel has
// promoted a replica, by making the old master a replica of it: the held
// writes then fail with READONLY, on which go-redis drops the connection and
// asks Sentinel again, instead of waiting for the hold to expire (Sentinel
// announces the switch to clients only at the end of the failover). If no
// promotion is seen in time the hold simply expires; the old master then
// refuses writes (no replicas left, min-replicas-to-write) or has been
// turned into a replica by Sentinel.
func (r *FormationReconciler) releaseHold(ctx context.Context, s *formationState, master *memberState, holdEnds time.Time) {
	for time.Now().Before(holdEnds) {
		for _, o := range s.members {
			if o == master || !o.obs.Running || o.obs.RedisErr != nil {
				continue
			}
			if repl, err := s.admin.Replication(ctx, o.obs.Redis); err != nil || repl.Role != "master" {
				continue
			}
			if err := s.admin.ReplicaOf(ctx, master.obs.Redis, o.obs.Redis); err != nil {
				s.log.Info("could not demote the old master after the promotion; its write hold expires by itself", "member", master.name, "error", err.Error())
				return
			}
			_ = s.admin.ResumeWrites(ctx, master.obs.Redis)
			s.log.Info("old master demoted as soon as Sentinel promoted a replica; held writes released", "member", master.name, "promoted", o.name)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitReplicasCaughtUp waits, briefly, until every replica linked to the
// master has replicated its whole stream.
func (r *FormationReconciler) waitReplicasCaughtUp(ctx context.Context, s *formationState, master *memberState) error {
	deadline := time.Now().Add(time.Second)
	for {
		m, err := s.admin.Replication(ctx, master.obs.Redis)
		if err != nil {
			return err
		}
		behind := ""
		for _, o := range s.members {
			if o == master || !o.obs.Running || o.obs.RedisErr != nil || !o.obs.Repl.LinkUp {
				continue
			}
			repl, err := s.admin.Replication(ctx, o.obs.Redis)
			if err != nil || repl.Offset < m.Offset {
				behind = o.name
				break
			}
		}
		if behind == "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("replica %s did not catch up with the master within a second; the planned failover is retried", behind)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// removeLeaving deletes members beyond spec.members, never the master: a
// leaving master first hands its role over with a planned failover. The
// remaining sentinels forget the removed ones through the guarded RESET of
// the topology decisions.
func (r *FormationReconciler) removeLeaving(ctx context.Context, s *formationState) error {
	for _, m := range s.leaving {
		if m.instance != nil && m.instance.IPv4 != "" && s.plan.Master == (endpoint.Endpoint{Host: m.instance.IPv4, Port: int(s.f.Spec.Redis.Port)}) {
			return r.plannedFailover(ctx, s, "planned failover away from "+m.name+", which the scale-down removes")
		}
	}
	if s.plan.FailoverInProgress {
		return nil
	}
	for _, m := range s.leaving {
		s.log.Info("removing a member beyond spec.members", "member", m.name)
		if err := s.incus.DeleteInstance(ctx, m.name); err != nil {
			return fmt.Errorf("removing member %s: %w", m.name, err)
		}
		r.event(s.f, corev1.EventTypeNormal, "MemberRemoved", "ScaleDown", m.name, "removed %s (spec.members is %d)", m.name, s.f.Spec.Members)
		s.progressing = "scaling down to " + fmt.Sprint(s.f.Spec.Members) + " members"
	}
	return nil
}
