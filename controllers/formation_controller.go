package controllers

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/internal/incus"
	"github.com/incusops/redis-sentinel-operator/internal/metrics"
	"github.com/incusops/redis-sentinel-operator/internal/redisadmin"
	"github.com/incusops/redis-sentinel-operator/internal/safe"
)

// FormationReconciler reconciles RedisSentinelFormation resources.
//
// It keeps no decision state between reconciles: everything a pass needs
// is read from the API (the formation's status and the Secrets it owns),
// from Incus and from the servers, so a restarted or newly elected
// operator decides exactly as the previous one would have.
type FormationReconciler struct {
	client.Client
	// APIReader reads from the API server, bypassing the cache: a pass
	// starts from the status the previous pass wrote, never an older copy.
	APIReader client.Reader
	Recorder  recorder.EventRecorder
	Incus     incus.ServerSource
	Redis     redisadmin.Dialer
	Metrics   *metrics.Operator
	Canary    *canary
	Watcher   SentinelWatcher
	// InstanceWatcher triggers passes on Incus lifecycle events of the
	// members' instances.
	InstanceWatcher InstanceWatcher
	// SecretWatches triggers passes on Secret changes (nil: none, as in
	// the tests on fakes).
	SecretWatches *secretWatches
	Guard         safe.Guard
	Options       Options
	// Now is the clock; tests replace it.
	Now func() time.Time
	// NewPassword generates the operator's own users' passwords
	// (passwords.Generate when nil); tests replace it.
	NewPassword func() (string, error)
	// reservations serializes choosing members' addresses (see
	// observeAddressing).
	reservations sync.Mutex
}

// errBlocked ends a pass that cannot go on until the user changes something
// (a Secret, an instance name clash); status says what.
var errBlocked = errors.New("blocked until the input changes")

// Reconcile is one pass: observe Incus, the servers and Sentinel's events
// into one value; decide the actions from spec, status, the observation and
// the time; run them; then patch the status once, from the snapshot taken
// at the start (optimistic lock: a pass computed from an outdated status is
// never written, it is run again).
func (r *FormationReconciler) Reconcile(ctx context.Context, req ctrl.Request) (result ctrl.Result, err error) {
	log := ctrl.LoggerFrom(ctx)
	f := &redisv1alpha1.RedisSentinelFormation{}
	if err := r.APIReader.Get(ctx, req.NamespacedName, f); err != nil {
		if apierrors.IsNotFound(err) {
			// Gone, with or without its finalizer having run: nothing of
			// it may stay in memory.
			r.forget(req.NamespacedName)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !f.DeletionTimestamp.IsZero() {
		return r.finalize(ctx, f)
	}
	base := f.DeepCopy()
	var notes []note
	var obs *observation
	defer func() {
		werr := r.writeStatus(ctx, base, f)
		obs.release() // the addresses it chose are in the API now (or nowhere)
		if werr != nil {
			if apierrors.IsConflict(werr) {
				log.V(1).Info("the formation changed during the pass; running it again from the new version")
				result, err = ctrl.Result{Requeue: true}, nil
				return
			}
			r.Metrics.ReconcileError(f.Namespace, f.Name, "status")
			result, err = ctrl.Result{}, fmt.Errorf("writing status: %w", werr)
			return
		}
		for _, n := range notes {
			r.event(f, n.eventType, n.reason, n.action, n.member, "%s", n.message)
			if n.failover != nil {
				r.Metrics.FailoverObserved(f.Namespace, f.Name, n.failover.path, n.failover.outage)
			}
		}
	}()

	// Sentinel's +switch-master reaches status at once, before the slower
	// full observation (which may wait on a dead master's timeout).
	if switched, ns := recordSwitches(f, r.Watcher.Switches(req.NamespacedName)); switched {
		recordEvents(&f.Status, r.Watcher.Events(req.NamespacedName))
		notes = ns
		return ctrl.Result{RequeueAfter: nextPass}, nil
	}

	now := r.now()
	obs = r.observe(ctx, f, log)
	if obs.incusOptions != nil {
		r.InstanceWatcher.Watch(req.NamespacedName, *obs.incusOptions, instanceNames(obs))
	}
	p := decide(f, obs, r.Options, now)
	if tp := p.topology; len(tp.Actions) > 0 {
		log.Info("healing the topology", "master", tp.MasterMember, "address", tp.Master.String(), "source", string(tp.Source), "configEpoch", tp.ConfigEpoch, "authoritative", tp.Authoritative, "staleSentinels", tp.Stale, "actions", len(tp.Actions))
	}
	if paused(f) {
		withhold(&p)
	}
	res := r.act(ctx, f, obs, p, log)
	notes = setStatus(f, obs, p, res, r.Options, now)
	r.Metrics.ObserveFormation(f.Namespace, f.Name, metricsObservation(f, obs, p))
	// Only a pass that read the instances knows which sentinels run: one
	// whose Incus listing failed (as it may while the master's container
	// is being stopped) would cancel every subscription and lose the
	// failover's events.
	if obs.creds != nil && obs.incusOptions != nil {
		r.Watcher.Watch(req.NamespacedName, adminCredentials(obs.creds, obs.tls), sentinelTargets(obs))
	}
	if f.Status.Phase == redisv1alpha1.PhaseReady && f.Status.Connection != nil {
		r.Canary.maybeProbe(req.NamespacedName, connectionData(f, obs.creds, f.Status.Connection.SentinelAddresses, obs.tls), log)
	}
	return r.result(f, p, res)
}

// writeStatus patches what the pass changed: the status (with the
// snapshot's resourceVersion as an optimistic lock), then the finalizers.
func (r *FormationReconciler) writeStatus(ctx context.Context, base, f *redisv1alpha1.RedisSentinelFormation) error {
	if !equality.Semantic.DeepEqual(base.Status, f.Status) {
		if err := r.Status().Patch(ctx, f, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})); err != nil {
			return err
		}
	}
	if !equality.Semantic.DeepEqual(base.Finalizers, f.Finalizers) {
		metaBase := f.DeepCopy()
		metaBase.Finalizers = base.Finalizers
		return r.Patch(ctx, f, client.MergeFrom(metaBase))
	}
	return nil
}

// result merges the pass's wishes: an error retries with backoff, a block
// waits for the watched inputs to change or a backing-off poll (see
// blockedRetry), and otherwise
// the soonest requeue wins: the plan's own, a quick one while the formation
// converges, the resync period once it is Ready.
func (r *FormationReconciler) result(f *redisv1alpha1.RedisSentinelFormation, p plan, res outcome) (ctrl.Result, error) {
	switch {
	case errors.Is(res.err, errBlocked):
		return ctrl.Result{RequeueAfter: blockedRetry(f, r.now())}, nil
	case res.err != nil:
		r.Metrics.ReconcileError(f.Namespace, f.Name, res.phase)
		return ctrl.Result{}, res.err
	}
	after := r.Options.ResyncPeriod
	if f.Status.Phase != redisv1alpha1.PhaseReady && f.Status.Phase != redisv1alpha1.PhasePaused {
		after = convergePoll
	}
	if p.requeueNow {
		return ctrl.Result{RequeueAfter: nextPass}, nil
	}
	if p.requeue > 0 {
		after = min(after, p.requeue)
	}
	return ctrl.Result{RequeueAfter: after}, nil
}

// nextPass is the delay of a pass asked for "at once". It is a delay, not
// Requeue, because controller-runtime's rate limiter would double the wait
// of each consecutive Requeue of the same formation (5 ms, 10 ms, ... 5 s):
// a bring-up or rollout asks for many in a row.
const nextPass = 5 * time.Millisecond

// convergePoll is how soon a formation that is not Ready is looked at again
// when nothing else triggers a reconcile.
const convergePoll = 2 * time.Second

// blockedPoll is the longest a blocked formation waits for its next look.
const blockedPoll = time.Minute

// blockedRetry is how soon a blocked formation is looked at again. Watches
// on its spec and Secrets retrigger it at once; only a poll sees what no
// watch covers, such as an Incus instance in the way of a member removed by
// hand. (Blocked passes once ended without a requeue, which left such a
// formation blocked for good.) The poll backs off with how long the
// formation has not been Ready (status, so a restart keeps it), from
// convergePoll to blockedPoll: a block lifted soon is noticed within
// seconds, one that lasts costs a look a minute.
func blockedRetry(f *redisv1alpha1.RedisSentinelFormation, now time.Time) time.Duration {
	since := now
	if c := meta.FindStatusCondition(f.Status.Conditions, redisv1alpha1.ConditionReady); c != nil && c.Status == metav1.ConditionFalse {
		since = c.LastTransitionTime.Time
	}
	return min(max(now.Sub(since), convergePoll), blockedPoll)
}

// forget drops everything held in memory for a formation: its Sentinel
// subscriptions, its Incus event routing, its admin and canary clients and
// its metric series.
func (r *FormationReconciler) forget(key types.NamespacedName) {
	r.Watcher.Forget(key)
	r.InstanceWatcher.Forget(key)
	r.SecretWatches.release(key)
	r.Redis.Forget(key.String())
	r.Canary.forget(key)
	r.Metrics.ForgetFormation(key.Namespace, key.Name)
}

func (r *FormationReconciler) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// note is an Event to record once the status that it describes is written.
type note struct {
	eventType, reason, action, member, message string
	// failover is set on a note that records a master switch.
	failover *failoverNote
}

// failoverNote is what the metrics record of a master switch: the path
// that promoted the new master (a metrics.Path* value) and the outage (0:
// not measured).
type failoverNote struct {
	path   string
	outage time.Duration
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
