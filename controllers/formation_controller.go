package controllers

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/internal/incus"
	"github.com/incusops/redis-sentinel-operator/internal/metrics"
	"github.com/incusops/redis-sentinel-operator/internal/redisadmin"
	"github.com/incusops/redis-sentinel-operator/internal/topology"
)

// FormationReconciler reconciles RedisSentinelFormation resources.
type FormationReconciler struct {
	client.Client
	// APIReader reads from the API server, bypassing the cache.
	APIReader client.Reader
	Recorder  recorder.EventRecorder
	Incus     incus.ServerSource
	Redis     redisadmin.Dialer
	Metrics   *metrics.Operator
	Canary    CanaryProber
	Watcher   SentinelWatcher
	Options   Options
	// Now is the clock; tests replace it.
	Now func() time.Time

	memMu sync.Mutex
	mem   map[types.NamespacedName]*memory
}

// formationState carries one reconcile's observations between phases.
type formationState struct {
	f       *redisv1alpha1.RedisSentinelFormation
	log     logr.Logger
	creds   redisadmin.Credentials
	incus   incus.Server
	admin   redisadmin.Admin
	members []*memberState
	// leaving are owned instances beyond spec.members (a scale-down).
	leaving []*memberState
	plan    topology.Plan
	// progressing says what the operator is doing; "" when idle.
	progressing string
	// recordedSwitches counts the watcher's pending switches this status
	// records; they are acknowledged once it is written.
	recordedSwitches int
	// plannedFailover, when set, asks Sentinel to move the master role
	// (a rollout reached the master); it says why.
	plannedFailover string
	// problems are the reasons the formation is degraded, first one wins
	// the condition's reason.
	problems []problem
}

// memberState is one member: its instance and what its servers said.
type memberState struct {
	index    int
	name     string
	instance *incus.Instance
	obs      topology.Member
	// quorumErr is the sentinel's CKQUORUM answer.
	quorumErr error
}

// problem is one reason the formation is not healthy.
type problem struct {
	reason  string
	message string
}

func (s *formationState) degrade(reason, format string, args ...any) {
	s.problems = append(s.problems, problem{reason: reason, message: fmt.Sprintf(format, args...)})
}

// errBlocked stops a reconcile that cannot go on until the user changes
// something (a Secret, an instance name clash); status says what.
var errBlocked = errors.New("blocked until the input changes")

// Reconcile runs the phases in order: secrets, instances (which adds the
// finalizer before the first instance exists), configuration and topology
// (observe, decide, heal), connection, status.
// Status is patched once, at the end, from what was observed.
func (r *FormationReconciler) Reconcile(ctx context.Context, req ctrl.Request) (result ctrl.Result, err error) {
	log := ctrl.LoggerFrom(ctx)
	f := &redisv1alpha1.RedisSentinelFormation{}
	if err := r.Get(ctx, req.NamespacedName, f); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	s := &formationState{f: f, log: log}
	before := f.Status.DeepCopy()

	if !f.DeletionTimestamp.IsZero() {
		return r.finalize(ctx, s)
	}
	if err := r.followSwitches(ctx, s); err != nil {
		return ctrl.Result{}, fmt.Errorf("recording a master switch: %w", err)
	}
	f = s.f // re-read if the switch write met a conflict
	before = f.Status.DeepCopy()

	phaseErr := r.runPhases(ctx, s)
	r.computeStatus(s, phaseErr)
	r.remember(client.ObjectKeyFromObject(f), func(m *memory) { m.phase = f.Status.Phase })
	if r.statusWorthWriting(client.ObjectKeyFromObject(f), before, &f.Status) {
		if err := r.Status().Update(ctx, f); err != nil {
			if apierrors.IsConflict(err) {
				return ctrl.Result{RequeueAfter: 100 * time.Millisecond}, nil
			}
			return ctrl.Result{}, fmt.Errorf("updating status: %w", err)
		}
		r.remember(client.ObjectKeyFromObject(f), func(m *memory) { m.statusWritten = r.now() })
	}
	r.Watcher.AckSwitches(client.ObjectKeyFromObject(f), s.recordedSwitches)
	return r.result(s, phaseErr)
}

// offsetRefresh is how often a status whose only change is replication
// offsets and lag is written: they move with every write and every
// replication ping, and would otherwise cost an API write per resync.
const offsetRefresh = 30 * time.Second

// statusWorthWriting reports whether the observed status must be written:
// any change but offsets at once, offsets alone every offsetRefresh.
func (r *FormationReconciler) statusWorthWriting(key types.NamespacedName, before, after *redisv1alpha1.RedisSentinelFormationStatus) bool {
	if equality.Semantic.DeepEqual(before, after) {
		return false
	}
	if !equality.Semantic.DeepEqual(withoutOffsets(before), withoutOffsets(after)) {
		return true
	}
	var last time.Time
	r.remember(key, func(m *memory) { last = m.statusWritten })
	return r.now().Sub(last) >= offsetRefresh
}

func withoutOffsets(st *redisv1alpha1.RedisSentinelFormationStatus) *redisv1alpha1.RedisSentinelFormationStatus {
	c := st.DeepCopy()
	for i := range c.Members {
		c.Members[i].ReplicationOffset, c.Members[i].LagBytes = 0, 0
	}
	return c
}

func (r *FormationReconciler) runPhases(ctx context.Context, s *formationState) error {
	phases := []struct {
		name string
		run  func(context.Context, *formationState) error
	}{
		{"secrets", r.reconcileSecrets},
		{"instances", r.reconcileInstances},
		{"topology", r.reconcileTopology},
		{"connection", r.reconcileConnection},
		{"canary", r.reconcileCanary},
	}
	for _, p := range phases {
		if err := p.run(ctx, s); err != nil {
			if !errors.Is(err, errBlocked) {
				r.Metrics.ReconcileError(s.f.Namespace, s.f.Name, p.name)
				s.log.Error(err, "reconcile phase failed; retrying with backoff", "phase", p.name)
			}
			return fmt.Errorf("%s: %w", p.name, err)
		}
	}
	return nil
}

// result requeues soon while the formation converges and at the resync
// period once it is Ready: Sentinel events trigger reconciles in between.
func (r *FormationReconciler) result(s *formationState, phaseErr error) (ctrl.Result, error) {
	switch {
	case errors.Is(phaseErr, errBlocked):
		return ctrl.Result{}, nil // watches on Secrets and the resource retrigger
	case phaseErr != nil:
		return ctrl.Result{}, phaseErr
	case s.f.Status.Phase != redisv1alpha1.PhaseReady:
		return ctrl.Result{RequeueAfter: 2 * time.Second}, nil
	default:
		return ctrl.Result{RequeueAfter: r.Options.ResyncPeriod}, nil
	}
}

func (r *FormationReconciler) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// memory is what the controller remembers about a formation between
// reconciles, beyond its status.
type memory struct {
	// lastReset is when each sentinel was last SENTINEL RESET, so that a
	// reset is never repeated in a loop.
	lastReset map[string]time.Time
	// staleSince is since when each sentinel has monitored another address
	// than the master.
	staleSince map[string]time.Time
	// settingsApplied is the digest of the runtime settings each member was
	// last given with CONFIG SET.
	settingsApplied map[string][32]byte
	// lastCanary is the formation's last canary probe.
	lastCanary time.Time
	// lastPlannedFailover is when a planned failover was last asked for.
	lastPlannedFailover time.Time
	// started is when the operator last started each member's container.
	started map[string]time.Time
	// statusWritten is when the status was last written.
	statusWritten time.Time
	// phase is the phase the last pass computed. The cached object's
	// status can lag behind the last write, so gating on it could start a
	// second replacement before the first replaced member has synced.
	phase redisv1alpha1.FormationPhase
	// password is the data-plane password the members were last given;
	// retireAt is when the one before it stops being accepted.
	password string
	retireAt time.Time
}

// remember runs f on the formation's memory under the lock.
func (r *FormationReconciler) remember(key types.NamespacedName, f func(*memory)) {
	r.memMu.Lock()
	defer r.memMu.Unlock()
	if r.mem == nil {
		r.mem = map[types.NamespacedName]*memory{}
	}
	m := r.mem[key]
	if m == nil {
		m = &memory{lastReset: map[string]time.Time{}, staleSince: map[string]time.Time{}, settingsApplied: map[string][32]byte{}, started: map[string]time.Time{}}
		r.mem[key] = m
	}
	f(m)
}

func (r *FormationReconciler) forget(key types.NamespacedName) {
	r.memMu.Lock()
	defer r.memMu.Unlock()
	delete(r.mem, key)
	r.Canary.Forget(key.String())
}

// event records an Event on the formation. The member it concerns, if any,
// is part of the action: events.k8s.io folds events with the same reason
// and action into one series, which would hide all members but the first.
func (r *FormationReconciler) event(f *redisv1alpha1.RedisSentinelFormation, eventType, reason, action, member, note string, args ...any) {
	if member != "" {
		action += " " + member
	}
	r.Recorder.Eventf(f, nil, eventType, reason, action, note, args...)
}
