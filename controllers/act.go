package controllers

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/internal/acl"
	"github.com/incusops/redis-sentinel-operator/internal/endpoint"
	"github.com/incusops/redis-sentinel-operator/internal/fingerprint"
	"github.com/incusops/redis-sentinel-operator/internal/incus"
	"github.com/incusops/redis-sentinel-operator/internal/redisadmin"
	"github.com/incusops/redis-sentinel-operator/internal/render"
	"github.com/incusops/redis-sentinel-operator/internal/topology"
)

// awaitNetwork waits (up to 10 s) for a booting member's address, which
// both servers bind.
const awaitNetwork = "/lib/systemd/systemd-networkd-wait-online -i eth0 --timeout=10 && "

// outcome is what running a plan did.
type outcome struct {
	// done are the actions that succeeded, in order.
	done []action
	// err is the first failure; the actions after it did not run. phase
	// names the part of the pass it belongs to (metrics label).
	err   error
	phase string
	// problems and progressing add to the plan's, for status.
	problems    []problem
	progressing string
}

// act runs the plan's actions in order, stopping at the first failure.
// Creates and new members' configurations run in parallel (each in its own
// container); everything else runs one by one. Every action is idempotent
// and its effect is observed again by the next pass.
func (r *FormationReconciler) act(ctx context.Context, f *redisv1alpha1.RedisSentinelFormation, o *observation, p plan, log logr.Logger) outcome {
	var res outcome
	if o.stop != nil {
		res.err, res.phase = o.stop, o.stopPhase
		return res
	}
	for i := 0; i < len(p.actions); {
		batch := parallelBatch(p.actions[i:])
		errs := make([]error, len(batch))
		if len(batch) == 1 {
			errs[0] = r.run(ctx, f, o, batch[0], log)
		} else {
			var wg sync.WaitGroup
			for j, a := range batch {
				wg.Add(1)
				r.Guard.Go(componentAct, func() {
					defer wg.Done()
					errs[j] = errors.New("panicked") // replaced unless run panics
					errs[j] = r.run(ctx, f, o, a, log)
				})
			}
			wg.Wait()
		}
		for j, a := range batch {
			if err := r.report(f, a, errs[j], &res, log); err != nil && res.err == nil {
				res.err, res.phase = err, phaseOf(a.kind)
			}
		}
		if res.err != nil {
			return res
		}
		i += len(batch)
	}
	return res
}

// parallelBatch is the run of actions at the head of list that may run at
// once: creates, new members' configurations, or new TLS material.
func parallelBatch(list []action) []action {
	parallel := func(a action) bool {
		return a.kind == actCreate || a.kind == actApplyTLS || (a.kind == actTopology && a.topology.Kind == topology.Configure)
	}
	n := 1
	for n < len(list) && parallel(list[0]) && parallel(list[n]) && list[n].kind == list[0].kind {
		n++
	}
	return list[:n]
}

func phaseOf(k actionKind) string {
	switch k {
	case actAddFinalizer:
		return "finalizer"
	case actCreate, actStart, actPin, actReplace, actRemove, actAbandonInstance, actDeleteAbandoned:
		return "instances"
	case actApplyCredentials, actApplyBackendRules, actWriteSecret, actWriteConnection, actIssueCertificates:
		return "secrets"
	case actConfigSet, actSetPriority:
		return "configuration"
	}
	return "topology"
}

// report logs, records an Event and notes the progress of one action.
// Errors that only mean "look again" (an Incus operation still pending, a
// name taken by our own half-made create) are not failures.
func (r *FormationReconciler) report(f *redisv1alpha1.RedisSentinelFormation, a action, err error, res *outcome, log logr.Logger) error {
	if errors.Is(err, incus.ErrOperationPending) || errors.Is(err, incus.ErrAlreadyExists) {
		log.V(1).Info("Incus operation still pending; the next pass looks again", "action", string(a.kind), "member", a.member)
		return nil
	}
	kind := string(a.kind)
	if a.kind == actTopology {
		kind = string(a.topology.Kind)
	}
	if err != nil {
		switch a.kind {
		case actCreate, actStart, actPin:
			res.problems = append(res.problems, problem{ReasonInstanceError, fmt.Sprintf("%s %s: %v", kind, a.member, err)})
		case actApplyCredentials, actApplyBackendRules:
			res.problems = append(res.problems, problem{ReasonCredentialsRefused, fmt.Sprintf("the members refused the ACL users (%s); the previous ones stay: %v", a.reason, err)})
		}
		r.event(f, corev1.EventTypeWarning, "ActionFailed", kind, a.member, "%s %s failed (%s); retrying: %v", kind, a.member, a.reason, err)
		log.Error(err, "action failed; the pass ends here and is retried with backoff", "action", kind, "member", a.member, "reason", a.reason)
		return fmt.Errorf("%s %s: %w", kind, a.member, err)
	}
	res.done = append(res.done, a)
	switch a.kind {
	case actAddFinalizer, actWriteSecret:
		return nil // bookkeeping, no Event
	case actTopology:
		res.progressing = "healing: " + kind + " " + a.member
	}
	log.Info("action done", "action", kind, "member", a.member, "target", a.target.String(), "reason", a.reason)
	r.event(f, corev1.EventTypeNormal, kind, kind, a.member, "%s: %s", orFormation(a.member), a.reason)
	return nil
}

func orFormation(member string) string {
	if member == "" {
		return "formation"
	}
	return member
}

// run carries out one action.
func (r *FormationReconciler) run(ctx context.Context, f *redisv1alpha1.RedisSentinelFormation, o *observation, a action, log logr.Logger) error {
	switch a.kind {
	case actAddFinalizer:
		addFinalizer(f) // written with the status at the end of the pass
		return nil
	case actCreate:
		log.Info("creating member instance", "member", a.member, "instance", a.instance, "pinnedAddress", a.spec.Devices["eth0"]["ipv4.address"], "target", a.spec.Target)
		return o.incus.CreateInstance(ctx, a.spec)
	case actStart:
		return o.incus.StartInstance(ctx, a.instance)
	case actPin:
		return o.incus.UpdateInstanceDevice(ctx, a.instance, "eth0", map[string]string{"ipv4.address": a.target.Host})
	case actReplace, actRemove, actDeleteAbandoned:
		return o.incus.DeleteInstance(ctx, a.instance)
	case actAbandonInstance:
		return nil // status names the new instance; the next pass creates it
	case actTopology:
		return r.heal(ctx, f, o, a.topology)
	case actConfigSet, actSetPriority:
		return o.admin.ConfigSet(ctx, a.target, a.settings)
	case actApplyCredentials:
		return r.applyCredentials(ctx, f, o, a.creds, a.backend)
	case actApplyBackendRules:
		return r.applyBackendRules(ctx, o, a.creds, a.backend)
	case actWriteSecret:
		return r.writeOwnedSecret(ctx, f, a.observed, a.secretName, a.data)
	case actHoldWrites:
		if len(a.settings) > 0 {
			if err := o.admin.ConfigSet(ctx, a.target, a.settings); err != nil {
				return err
			}
		}
		return o.admin.PauseWrites(ctx, a.target, writeHold)
	case actReleaseWrites:
		return o.admin.ResumeWrites(ctx, a.target)
	case actSentinelFailover:
		return o.admin.SentinelFailover(ctx, a.target, f.Spec.MasterName)
	case actDemoteOldMaster:
		from := o.member(a.member)
		if err := o.admin.ReplicaOf(ctx, from.Redis, a.target); err != nil {
			return err
		}
		return o.admin.ResumeWrites(ctx, from.Redis)
	case actWriteConnection:
		return r.writeOwnedSecret(ctx, f, o.connection, connectionSecretName(f), a.data)
	case actIssueCertificates:
		return r.writeOwnedSecret(ctx, f, a.observed, tlsSecretName(f), a.data)
	case actApplyTLS:
		m := o.member(a.member)
		paths, err := writeTLSFiles(ctx, o, m, a.files)
		if err != nil {
			return err
		}
		if err := runScript(ctx, o.incus, m.instanceName, m.engine().Chown(paths...)); err != nil {
			return err
		}
		return o.admin.ConfigSet(ctx, m.Redis, renderTLS(f, m.engine()).Reload())
	case actRestartSentinel:
		m := o.member(a.member)
		return runScript(ctx, o.incus, m.instanceName, "systemctl restart "+m.engine().SentinelUnit)
	}
	return fmt.Errorf("unknown action %q", a.kind)
}

// heal carries out one topology action.
func (r *FormationReconciler) heal(ctx context.Context, f *redisv1alpha1.RedisSentinelFormation, o *observation, a topology.Action) error {
	m := o.member(a.Member)
	name := f.Spec.MasterName
	switch a.Kind {
	case topology.Configure:
		return r.configureMember(ctx, f, o, m, a.Target, a.Settings)
	case topology.StartRedis:
		if err := r.writeRedisConf(ctx, f, o, m, a.Target); err != nil {
			return err
		}
		e := m.engine()
		return runScript(ctx, o.incus, m.instanceName, e.Chown(e.ServerConf)+" && systemctl start --no-block "+e.ServerUnit)
	case topology.StartSentinel:
		return runScript(ctx, o.incus, m.instanceName, "systemctl start --no-block "+m.engine().SentinelUnit)
	case topology.ReplicaOf:
		return o.admin.ReplicaOf(ctx, m.Redis, a.Target)
	case topology.Remonitor:
		if err := o.admin.SentinelRemove(ctx, m.Sentinel, name); err != nil {
			return err
		}
		return r.monitor(ctx, f, o, m, a.Target)
	case topology.Monitor:
		return r.monitor(ctx, f, o, m, a.Target)
	case topology.Unmonitor:
		for _, other := range m.OtherNames {
			if err := o.admin.SentinelRemove(ctx, m.Sentinel, other); err != nil && !errors.Is(err, redisadmin.ErrNoSuchMaster) {
				return err
			}
		}
		return nil
	case topology.SentinelSet:
		return o.admin.SentinelSet(ctx, m.Sentinel, name, a.Settings)
	case topology.Reset:
		return o.admin.SentinelReset(ctx, m.Sentinel, name)
	}
	return fmt.Errorf("unknown topology action %q", a.Kind)
}

// monitor makes a sentinel monitor the master with every spec setting and
// its monitoring user.
func (r *FormationReconciler) monitor(ctx context.Context, f *redisv1alpha1.RedisSentinelFormation, o *observation, m *memberObs, master endpoint.Endpoint) error {
	d := desired(f)
	if err := o.admin.SentinelMonitor(ctx, m.Sentinel, d.MasterName, master, d.Quorum); err != nil {
		return err
	}
	settings := monitoringAuth(o.creds)
	settings["down-after-milliseconds"] = strconv.Itoa(d.DownAfterMs)
	settings["failover-timeout"] = strconv.Itoa(d.FailoverTimeoutMs)
	settings["parallel-syncs"] = strconv.Itoa(d.ParallelSyncs)
	if err := o.admin.SentinelSet(ctx, m.Sentinel, d.MasterName, settings); err != nil {
		// Without its monitoring user the sentinel would never reach the
		// master, and nothing tells that from its answers: removed, the
		// master is monitored afresh by the next pass.
		if rerr := o.admin.SentinelRemove(ctx, m.Sentinel, d.MasterName); rerr != nil {
			return fmt.Errorf("%w; removing the half-made monitor: %v", err, rerr)
		}
		return err
	}
	return nil
}

// configureMember writes a new member's redis.conf (a replica of master, or
// the master when master is zero) and its bootstrap sentinel.conf, then
// starts both. Sentinel owns its file afterwards.
func (r *FormationReconciler) configureMember(ctx context.Context, f *redisv1alpha1.RedisSentinelFormation, o *observation, m *memberObs, master endpoint.Endpoint, sentinelSettings map[string]string) error {
	if err := r.writeRedisConf(ctx, f, o, m, master); err != nil {
		return err
	}
	monitored := master
	if monitored.IsZero() {
		monitored = m.Redis
	}
	// Every other member with an address is a replica of the master (or is
	// being configured as one): Sentinel would otherwise learn of those that
	// attach after its first INFO of the master only from the next one.
	var replicas []endpoint.Endpoint
	var sentinels []render.KnownSentinel
	for _, other := range o.members {
		if other.Redis.Host != "" && other.Redis != monitored {
			replicas = append(replicas, other.Redis)
		}
		if addr := memberAddress(f, other); other != m && addr != "" {
			sentinels = append(sentinels, render.KnownSentinel{
				Address: endpoint.Endpoint{Host: addr, Port: memberPorts(f, other).sentinel}, ID: sentinelRunID(f, other.index)})
		}
	}
	d := desired(f)
	if v, ok := sentinelSettings["down-after-milliseconds"]; ok { // topology.AwaitMasterDownAfterMs
		var err error
		if d.DownAfterMs, err = strconv.Atoi(v); err != nil {
			return fmt.Errorf("sentinel down-after-milliseconds %q: %w", v, err)
		}
	}
	e := m.engine()
	conf, err := render.SentinelConf(render.Sentinel{
		Address: m.Sentinel.Host, Port: m.Sentinel.Port, Users: acl.SentinelUsers(o.creds, appliedBackendUser(f), e),
		PeerUser: acl.PeerUser, PeerPassword: o.creds[acl.Peer].Current,
		MasterName: d.MasterName, Master: monitored, Quorum: d.Quorum,
		DownAfterMs: d.DownAfterMs, FailoverTimeoutMs: d.FailoverTimeoutMs, ParallelSyncs: d.ParallelSyncs,
		AuthUser: acl.MonitoringUser, AuthPass: o.creds[acl.Monitoring].Current, KnownReplicas: replicas,
		ID: sentinelRunID(f, m.index), KnownSentinels: sentinels, TLS: renderTLS(f, e), Engine: e,
	})
	if err != nil {
		return err
	}
	if err := o.incus.WriteFile(ctx, m.instanceName, e.SentinelConf, conf, 0o640, 0, 0); err != nil {
		return err
	}
	tlsFiles, _ := o.tls.memberFiles(m)
	tlsPaths, err := writeTLSFiles(ctx, o, m, tlsFiles)
	if err != nil {
		return err
	}
	// redis-server is started but not enabled: after a container restart it
	// stays down until the operator decides its role. A new member has no
	// data to load, so the start returns as soon as it is ready (the unit
	// is Type=notify): the next pass finds it answering.
	// The sentinel is enabled by its unit's link alone: `systemctl enable`
	// would also reload systemd, half a second on the critical path.
	reload, err := writeHandoverGate(ctx, f, o, m)
	if err != nil {
		return err
	}
	unit := e.SentinelUnit + ".service"
	return runScript(ctx, o.incus, m.instanceName, awaitNetwork+e.Chown(append([]string{e.ServerConf, e.SentinelConf}, tlsPaths...)...)+
		" && ln -sf /lib/systemd/system/"+unit+" /etc/systemd/system/multi-user.target.wants/"+unit+reload+
		" && systemctl start "+e.SentinelUnit+" "+e.ServerUnit+" && touch "+e.Configured)
}

// handoverBound is how long a master's clean stop waits for the operator
// to hand its role over (render.HandoverGate): an evacuation's planned
// failover takes a few seconds; Incus's own shutdown timeout is longer.
const handoverBound = 15 * time.Second

// writeHandoverGate installs the handover gate in a member on an Incus
// cluster, whose evacuations stop members cleanly, and returns the step
// that makes systemd read it (none on a standalone server, where the
// gate is not installed).
func writeHandoverGate(ctx context.Context, f *redisv1alpha1.RedisSentinelFormation, o *observation, m *memberObs) (string, error) {
	if o.cluster == nil {
		return "", nil
	}
	e := m.engine()
	script, dropIn, err := render.HandoverGate{Engine: e, Address: m.Redis.Host, Port: m.Redis.Port, TLS: renderTLS(f, e),
		User: acl.MonitoringUser, Bound: handoverBound}.Files()
	if err != nil {
		return "", err
	}
	sentinelDropIn, order := render.GateSentinelDropIn(e)
	if err := runScript(ctx, o.incus, m.instanceName, "mkdir -p "+path.Dir(render.GateScript)+" "+path.Dir(render.GateDropIn(e))+" "+path.Dir(sentinelDropIn)); err != nil {
		return "", err
	}
	for _, file := range []struct {
		path    string
		content []byte
		mode    os.FileMode
	}{{render.GateScript, script, 0o755}, {render.GateDropIn(e), dropIn, 0o644}, {sentinelDropIn, order, 0o644}} {
		if err := o.incus.WriteFile(ctx, m.instanceName, file.path, file.content, file.mode, 0, 0); err != nil {
			return "", err
		}
	}
	return " && systemctl daemon-reload", nil
}

// writeTLSFiles writes a member's TLS files (none: nothing) and returns
// their paths, for the chown that makes them the redis user's (and only
// its: mode 0600). Each file is replaced atomically, and the key shares its
// file with its certificate, so a server never reads a half-written or
// mismatched pair.
func writeTLSFiles(ctx context.Context, o *observation, m *memberObs, files map[string][]byte) ([]string, error) {
	paths := slices.Sorted(maps.Keys(files))
	for _, path := range paths {
		if err := o.incus.WriteFile(ctx, m.instanceName, path, files[path], 0o600, 0, 0); err != nil {
			return nil, err
		}
	}
	return paths, nil
}

// sentinelRunID is the run ID of member index's sentinel: derived from
// the formation and the index, so that every member's sentinel.conf can
// name the others' before they run (they agree from their start instead of
// after their first hellos), and a rebuilt member's sentinel is the one
// the others knew at its address, not a new one beside a stale entry.
func sentinelRunID(f *redisv1alpha1.RedisSentinelFormation, index int) string {
	return fingerprint.Strings(string(f.UID), "sentinel", strconv.Itoa(index))[:40]
}

func (r *FormationReconciler) writeRedisConf(ctx context.Context, f *redisv1alpha1.RedisSentinelFormation, o *observation, m *memberObs, master endpoint.Endpoint) error {
	cfg := redisSettings(f, m.Redis, master)
	cfg.Users = acl.ServerUsers(o.creds, appliedBackendUser(f))
	cfg.MasterUser, cfg.MasterAuth = acl.ReplicationUser, o.creds[acl.Replication].Current
	cfg.TLS, cfg.Engine = renderTLS(f, m.engine()), m.engine()
	conf, err := render.RedisConf(cfg)
	if err != nil {
		return err
	}
	return o.incus.WriteFile(ctx, m.instanceName, m.engine().ServerConf, conf, 0o640, 0, 0)
}

// redisSettings is the render input of a member's redis.conf but its users
// and replication credentials.
func redisSettings(f *redisv1alpha1.RedisSentinelFormation, self endpoint.Endpoint, master endpoint.Endpoint) render.Redis {
	spec := f.Spec.Redis
	cfg := render.Redis{
		Address:           self.Host,
		Port:              self.Port,
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

// runtimeSettings are the spec's settings a running redis-server takes with
// CONFIG SET (no address, user or role in them).
func runtimeSettings(f *redisv1alpha1.RedisSentinelFormation) (map[string]string, error) {
	// RedisConf validates a complete config, so the render input carries
	// placeholders for what RuntimeSettings leaves out.
	cfg := redisSettings(f, endpoint.Endpoint{Host: "127.0.0.1", Port: int(f.Spec.Redis.Port)}, endpoint.Endpoint{})
	cfg.MasterUser, cfg.MasterAuth = acl.ReplicationUser, "placeholder"
	return render.RuntimeSettings(cfg)
}

// runScript executes a shell command in a member and turns a non-zero exit
// into an error carrying its output (which never holds a password: none is
// passed).
func runScript(ctx context.Context, srv incus.Server, instance, script string) error {
	res, err := srv.Exec(ctx, instance, []string{"sh", "-c", render.AwaitSystemd + "set -e; " + script})
	if err != nil {
		return err
	}
	if res.ExitCode != 0 {
		return fmt.Errorf("%q exited %d: %s%s", script, res.ExitCode, res.Stderr, res.Stdout)
	}
	return nil
}
