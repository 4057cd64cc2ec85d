package controllers

import (
	"context"
	"errors"
	"fmt"
	"maps"
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
	Recorder recorder.EventRecorder
	Incus    incus.ServerSource
	Redis    redisadmin.Dialer
	Metrics  *metrics.Operator
	Options  Options
	// Now is the clock; tests replace it.
	Now func() time.Time

	// lastReset remembers SENTINEL RESETs per formation and member, so that
	// a reset is never repeated in a loop.
	resetMu   sync.Mutex
	lastReset map[types.NamespacedName]map[string]time.Time
}

// formationState carries one reconcile's observations between phases.
type formationState struct {
	f       *redisv1alpha1.RedisSentinelFormation
	log     logr.Logger
	creds   redisadmin.Credentials
	incus   incus.Server
	admin   redisadmin.Admin
	members []*memberState
	plan    topology.Plan
	// progressing says what the operator is doing; "" when idle.
	progressing string
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

	phaseErr := r.runPhases(ctx, s)
	r.computeStatus(s, phaseErr)
	if !equality.Semantic.DeepEqual(before, &f.Status) {
		if err := r.Status().Update(ctx, f); err != nil {
			if apierrors.IsConflict(err) {
				return ctrl.Result{RequeueAfter: 100 * time.Millisecond}, nil
			}
			return ctrl.Result{}, fmt.Errorf("updating status: %w", err)
		}
	}
	return r.result(s, phaseErr)
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

// resetTimes returns a copy of the formation's last SENTINEL RESET per member.
func (r *FormationReconciler) resetTimes(key types.NamespacedName) map[string]time.Time {
	r.resetMu.Lock()
	defer r.resetMu.Unlock()
	return maps.Clone(r.lastReset[key])
}

func (r *FormationReconciler) recordReset(key types.NamespacedName, member string, at time.Time) {
	r.resetMu.Lock()
	defer r.resetMu.Unlock()
	if r.lastReset == nil {
		r.lastReset = map[types.NamespacedName]map[string]time.Time{}
	}
	if r.lastReset[key] == nil {
		r.lastReset[key] = map[string]time.Time{}
	}
	r.lastReset[key][member] = at
}

func (r *FormationReconciler) forgetResets(key types.NamespacedName) {
	r.resetMu.Lock()
	defer r.resetMu.Unlock()
	delete(r.lastReset, key)
}
