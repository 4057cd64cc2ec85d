package controllers

import (
	"context"
	"fmt"
	"maps"
	"strconv"
	"sync"
	"time"

	"github.com/incusops/redis-sentinel-operator/internal/endpoint"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/internal/render"
	"github.com/incusops/redis-sentinel-operator/internal/sentinel"
	"github.com/incusops/redis-sentinel-operator/internal/topology"
)

// Paths inside a member container (Debian's).
const (
	redisConfPath    = "/etc/redis/redis.conf"
	sentinelConfPath = "/etc/redis/sentinel.conf"
)

// awaitMembersOnBootstrap bounds how long a new formation waits, after its
// creation, for every member's address before it is bootstrapped anyway
// (see topology.Input.AwaitMembersUntil): a member that never comes up
// delays the others by at most this.
const awaitMembersOnBootstrap = 30 * time.Second

// reconcileTopology observes the members, decides with Sentinel's majority
// as the truth, and carries out the decided actions.
func (r *FormationReconciler) reconcileTopology(ctx context.Context, s *formationState) error {
	if err := r.rotatePassword(ctx, s); err != nil {
		return err
	}
	r.observe(ctx, s)
	r.watchSentinels(s)
	key := client.ObjectKeyFromObject(s.f)
	in := topology.Input{Desired: desired(s.f), Departing: len(s.leaving), Now: r.now()}
	r.remember(key, func(m *memory) {
		in.LastReset, in.StaleSince = maps.Clone(m.lastReset), maps.Clone(m.staleSince)
	})
	if s.f.Status.Master != nil {
		in.PreviousMaster = s.f.Status.Master.Member
	} else {
		in.AwaitMembersUntil = s.f.CreationTimestamp.Add(awaitMembersOnBootstrap)
	}
	for _, m := range s.members {
		in.Members = append(in.Members, m.obs)
	}
	s.plan = topology.Decide(in)
	r.remember(key, func(m *memory) {
		stale := map[string]time.Time{}
		for _, name := range s.plan.Stale {
			stale[name] = in.Now
			if since, ok := m.staleSince[name]; ok {
				stale[name] = since
			}
		}
		m.staleSince = stale
	})
	if s.plan.FailoverInProgress {
		s.log.Info("failover in progress; no healing action until Sentinel finishes", "master", s.plan.MasterMember)
	}
	// New members are configured at once (each in its own container); the
	// other actions run in the decided order.
	var configure, ordered []topology.Action
	for _, a := range s.plan.Actions {
		if a.Kind == topology.Configure {
			configure = append(configure, a)
		} else {
			ordered = append(ordered, a)
		}
	}
	errs := make([]error, len(configure))
	var wg sync.WaitGroup
	for i, a := range configure {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = r.execute(ctx, s, a)
		}()
	}
	wg.Wait()
	for i, a := range configure {
		if err := r.report(s, a, errs[i]); err != nil {
			return err
		}
	}
	for _, a := range ordered {
		if err := r.report(s, a, r.execute(ctx, s, a)); err != nil {
			return err
		}
	}
	if s.plan.FailoverInProgress {
		return nil
	}
	if err := r.applyRuntimeSettings(ctx, s); err != nil {
		return err
	}
	switch {
	case len(s.leaving) > 0:
		return r.removeLeaving(ctx, s)
	case s.plannedFailover != "":
		return r.plannedFailover(ctx, s, s.plannedFailover)
	}
	return nil
}

// applyRuntimeSettings brings every answering redis-server to the spec's
// runtime settings with CONFIG SET + CONFIG REWRITE, member by member,
// without a restart. A member is only told again when the settings changed
// since it was last told (or the operator restarted).
func (r *FormationReconciler) applyRuntimeSettings(ctx context.Context, s *formationState) error {
	key := client.ObjectKeyFromObject(s.f)
	for _, m := range s.members {
		if !m.obs.Running || m.obs.RedisErr != nil {
			continue
		}
		settings, err := render.RuntimeSettings(redisSettings(s.f, m.obs.Redis, s.creds.Password, endpoint.Endpoint{}))
		if err != nil {
			return err
		}
		digest := digestOf(settings)
		var applied bool
		r.remember(key, func(mem *memory) { applied = mem.settingsApplied[m.name] == digest })
		if applied {
			continue
		}
		if err := s.admin.ConfigSet(ctx, m.obs.Redis, settings); err != nil {
			return fmt.Errorf("applying settings to %s: %w", m.name, err)
		}
		r.remember(key, func(mem *memory) { mem.settingsApplied[m.name] = digest })
		s.log.V(1).Info("runtime settings applied", "member", m.name)
	}
	return nil
}

// report logs and records the outcome of one healing action.
func (r *FormationReconciler) report(s *formationState, a topology.Action, err error) error {
	if err != nil {
		r.event(s.f, corev1.EventTypeWarning, "HealFailed", string(a.Kind), a.Member, "%s on %s failed (%s); retrying: %v", a.Kind, a.Member, a.Reason, err)
		return fmt.Errorf("%s on %s: %w", a.Kind, a.Member, err)
	}
	s.log.Info("healing action done", "action", a.Kind, "member", a.Member, "target", a.Target.String(), "reason", a.Reason)
	r.event(s.f, corev1.EventTypeNormal, string(a.Kind), string(a.Kind), a.Member, "%s: %s", a.Member, a.Reason)
	s.progressing = "healing: " + string(a.Kind) + " " + a.Member
	return nil
}

// watchSentinels keeps the event watcher subscribed to exactly the
// formation's running sentinels.
func (r *FormationReconciler) watchSentinels(s *formationState) {
	var targets []sentinel.Target
	for _, m := range s.members {
		if m.obs.Running {
			targets = append(targets, sentinel.Target{Member: m.name, Addr: m.obs.Sentinel.String()})
		}
	}
	r.Watcher.Watch(client.ObjectKeyFromObject(s.f), s.creds.SentinelPassword, targets)
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

func (r *FormationReconciler) execute(ctx context.Context, s *formationState, a topology.Action) error {
	m := s.member(a.Member)
	name := s.f.Spec.MasterName
	switch a.Kind {
	case topology.Configure:
		return r.configureMember(ctx, s, m, a.Target)
	case topology.StartRedis:
		if err := r.writeRedisConf(ctx, s, m, a.Target); err != nil {
			return err
		}
		return r.run(ctx, s, m.name, "chown redis:redis "+redisConfPath+" && systemctl start --no-block redis-server")
	case topology.StartSentinel:
		return r.run(ctx, s, m.name, "systemctl start --no-block redis-sentinel")
	case topology.ReplicaOf:
		return s.admin.ReplicaOf(ctx, m.obs.Redis, a.Target)
	case topology.Remonitor:
		if err := s.admin.SentinelRemove(ctx, m.obs.Sentinel, name); err != nil {
			return err
		}
		return r.monitor(ctx, s, m, a.Target)
	case topology.Monitor:
		return r.monitor(ctx, s, m, a.Target)
	case topology.SentinelSet:
		return s.admin.SentinelSet(ctx, m.obs.Sentinel, name, a.Settings)
	case topology.Reset:
		r.remember(client.ObjectKeyFromObject(s.f), func(mem *memory) { mem.lastReset[m.name] = r.now() })
		return s.admin.SentinelReset(ctx, m.obs.Sentinel, name)
	}
	return fmt.Errorf("unknown action %q", a.Kind)
}

func (s *formationState) member(name string) *memberState {
	for _, m := range s.members {
		if m.name == name {
			return m
		}
	}
	panic("topology planned an action for an unknown member " + name)
}

// monitor makes a sentinel monitor the master with every spec setting and the
// data-plane password.
func (r *FormationReconciler) monitor(ctx context.Context, s *formationState, m *memberState, master endpoint.Endpoint) error {
	d := desired(s.f)
	if err := s.admin.SentinelMonitor(ctx, m.obs.Sentinel, d.MasterName, master, d.Quorum); err != nil {
		return err
	}
	return s.admin.SentinelSet(ctx, m.obs.Sentinel, d.MasterName, map[string]string{
		"auth-pass":               s.creds.Password,
		"down-after-milliseconds": strconv.Itoa(d.DownAfterMs),
		"failover-timeout":        strconv.Itoa(d.FailoverTimeoutMs),
		"parallel-syncs":          strconv.Itoa(d.ParallelSyncs),
	})
}

// configureMember writes a new member's redis.conf (a replica of master, or
// the master when master is zero) and its bootstrap sentinel.conf, then
// starts both. Sentinel owns its file afterwards.
func (r *FormationReconciler) configureMember(ctx context.Context, s *formationState, m *memberState, master endpoint.Endpoint) error {
	if err := r.writeRedisConf(ctx, s, m, master); err != nil {
		return err
	}
	monitored := master
	if monitored.IsZero() {
		monitored = m.obs.Redis
	}
	// Every other member with an address is a replica of the master (or is
	// being configured as one): Sentinel would otherwise learn of those that
	// attach after its first INFO of the master only from the next one.
	var replicas []endpoint.Endpoint
	for _, o := range s.members {
		if o.obs.Redis.Host != "" && o.obs.Redis != monitored {
			replicas = append(replicas, endpoint.Endpoint(o.obs.Redis))
		}
	}
	d := desired(s.f)
	conf, err := render.SentinelConf(render.Sentinel{
		Address: m.obs.Sentinel.Host, Port: m.obs.Sentinel.Port, Password: s.creds.SentinelPassword,
		MasterName: d.MasterName, Master: endpoint.Endpoint(monitored), Quorum: d.Quorum,
		DownAfterMs: d.DownAfterMs, FailoverTimeoutMs: d.FailoverTimeoutMs, ParallelSyncs: d.ParallelSyncs,
		RedisPassword: s.creds.Password, KnownReplicas: replicas,
	})
	if err != nil {
		return err
	}
	if err := s.incus.WriteFile(ctx, m.name, sentinelConfPath, conf, 0o640, 0, 0); err != nil {
		return err
	}
	// redis-server is started but not enabled: after a container restart it
	// stays down until the operator decides its role.
	return r.run(ctx, s, m.name, "chown redis:redis "+redisConfPath+" "+sentinelConfPath+
		" && systemctl enable --now redis-sentinel && systemctl start --no-block redis-server && touch "+configuredMarker)
}

func (r *FormationReconciler) writeRedisConf(ctx context.Context, s *formationState, m *memberState, master endpoint.Endpoint) error {
	conf, err := render.RedisConf(redisSettings(s.f, m.obs.Redis, s.creds.Password, master))
	if err != nil {
		return err
	}
	return s.incus.WriteFile(ctx, m.name, redisConfPath, conf, 0o640, 0, 0)
}

// redisSettings is the render input of a member's redis.conf.
func redisSettings(f *redisv1alpha1.RedisSentinelFormation, self endpoint.Endpoint, password string, master endpoint.Endpoint) render.Redis {
	spec := f.Spec.Redis
	cfg := render.Redis{
		Address:           self.Host,
		Port:              self.Port,
		Password:          password,
		Maxmemory:         spec.Maxmemory,
		MaxmemoryPolicy:   string(spec.MaxmemoryPolicy),
		AppendOnly:        spec.Persistence.AOF.Enabled == nil || *spec.Persistence.AOF.Enabled,
		AppendFsync:       string(spec.Persistence.AOF.Fsync),
		MinReplicasMaxLag: int(spec.MinReplicasMaxLagSeconds),
	}
	if spec.MinReplicasToWrite != nil {
		cfg.MinReplicasToWrite = int(*spec.MinReplicasToWrite)
	}
	if rdb := spec.Persistence.RDB; rdb.Enabled == nil || *rdb.Enabled {
		for _, p := range rdb.SavePoints {
			cfg.SavePoints = append(cfg.SavePoints, render.SavePoint{Seconds: int(p.Seconds), Changes: int(p.Changes)})
		}
	}
	if !master.IsZero() {
		cfg.ReplicaOf = &endpoint.Endpoint{Host: master.Host, Port: master.Port}
	}
	return cfg
}

// run executes a shell command in a member and turns a non-zero exit into an
// error carrying its output (which never holds a password: none is passed).
func (r *FormationReconciler) run(ctx context.Context, s *formationState, instance, script string) error {
	res, err := s.incus.Exec(ctx, instance, []string{"sh", "-c", "set -e; " + script})
	if err != nil {
		return err
	}
	if res.ExitCode != 0 {
		return fmt.Errorf("%q exited %d: %s%s", script, res.ExitCode, res.Stderr, res.Stdout)
	}
	return nil
}
