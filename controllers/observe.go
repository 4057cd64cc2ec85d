package controllers

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/incusops/redis-sentinel-operator/internal/endpoint"
	"github.com/incusops/redis-sentinel-operator/internal/redisadmin"
	"github.com/incusops/redis-sentinel-operator/internal/topology"
)

// configuredMarker is written into a member once the operator configured it;
// a rebuilt container lacks it.
const configuredMarker = "/etc/redis/rsf-configured"

// probeScript reports, in one exec, whether the member was configured and
// whether its two units are active. It runs only when a server did not
// answer, so a healthy formation costs no exec.
var probeScript = []string{"sh", "-c", `printf '%s %s %s\n' "$(test -f ` + configuredMarker + ` && echo yes || echo no)" ` +
	`"$(systemctl is-active redis-server)" "$(systemctl is-active redis-sentinel)"`}

// observe asks every running member's redis-server and sentinel, in
// parallel, and probes inside containers whose servers did not answer.
func (r *FormationReconciler) observe(ctx context.Context, s *formationState) {
	var wg sync.WaitGroup
	for _, m := range s.members {
		m.obs = topology.Member{Name: m.name}
		if m.instance == nil || m.instance.Status != "Running" || m.instance.IPv4 == "" {
			continue
		}
		m.obs.Running = true
		m.obs.Redis = endpoint.Endpoint{Host: m.instance.IPv4, Port: int(s.f.Spec.Redis.Port)}
		m.obs.Sentinel = endpoint.Endpoint{Host: m.instance.IPv4, Port: int(s.f.Spec.Redis.SentinelPort)}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.observeMember(ctx, s, m)
		}()
	}
	wg.Wait()
}

func (r *FormationReconciler) observeMember(ctx context.Context, s *formationState, m *memberState) {
	name := s.f.Spec.MasterName
	m.obs.Repl, m.obs.RedisErr = s.admin.Replication(ctx, m.obs.Redis)
	m.obs.View, m.obs.SentinelErr = s.admin.SentinelMaster(ctx, m.obs.Sentinel, name)
	if m.obs.SentinelErr == nil {
		m.quorumErr = s.admin.SentinelCKQuorum(ctx, m.obs.Sentinel, name)
	}
	if m.obs.RedisErr != nil || (m.obs.SentinelErr != nil && !errors.Is(m.obs.SentinelErr, redisadmin.ErrNoSuchMaster)) {
		probe, err := r.probe(ctx, s, m.name)
		if err != nil {
			s.log.Info("cannot probe member; treating it as unreachable until the next pass", "member", m.name, "error", err.Error())
			return
		}
		m.obs.Probe = probe
	}
}

func (r *FormationReconciler) probe(ctx context.Context, s *formationState, instance string) (*topology.Probe, error) {
	res, err := s.incus.Exec(ctx, instance, probeScript)
	if err != nil {
		return nil, err
	}
	fields := strings.Fields(res.Stdout)
	if len(fields) != 3 {
		return nil, fmt.Errorf("unexpected probe output %q (exit %d)", res.Stdout, res.ExitCode)
	}
	active := func(state string) bool { return state == "active" || state == "activating" || state == "reloading" }
	return &topology.Probe{Configured: fields[0] == "yes", RedisActive: active(fields[1]), SentinelActive: active(fields[2])}, nil
}
