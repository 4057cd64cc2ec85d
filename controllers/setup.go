// Package controllers holds the RedisSentinelFormation reconciler. A
// reconcile is one pass: observe (observe.go) into one value, decide
// (decide.go, rotation.go, connection.go; pure) the actions, run them
// (act.go), and write the status (status.go; pure) once at the end.
// Everything the next pass needs is in the API: the formation's status and
// the Secrets it owns.
package controllers

import (
	"context"
	"flag"
	"fmt"
	"time"

	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/internal/incus"
	"github.com/incusops/redis-sentinel-operator/internal/metrics"
	"github.com/incusops/redis-sentinel-operator/internal/redisadmin"
	"github.com/incusops/redis-sentinel-operator/internal/redisclient"
	"github.com/incusops/redis-sentinel-operator/internal/safe"
	"github.com/incusops/redis-sentinel-operator/internal/sentinel"
)

// Options are the controller's tunables, bound to command-line flags.
type Options struct {
	// MaxConcurrentReconciles is how many formations reconcile in parallel.
	MaxConcurrentReconciles int
	// ResyncPeriod is the safety-net poll of a Ready formation when nothing
	// triggers a reconcile.
	ResyncPeriod time.Duration
	// RedisTimeout bounds each command to a redis-server or sentinel.
	RedisTimeout time.Duration
	// PasswordGrace is how long a rotated data-plane password stays valid
	// beside the new one, so clients can reload the connection Secret.
	PasswordGrace time.Duration
	// OperatorNamespace is where IncusHosts' client certificate Secrets
	// live.
	OperatorNamespace string
	// MaxRetryDelay caps the exponential backoff after a failed reconcile
	// (controller-runtime's default cap is 1000 s): a formation whose
	// healing failed while a fault lasted is retried soon after it ends.
	MaxRetryDelay time.Duration
}

// BindFlags registers the options on a flag set.
func (o *Options) BindFlags(fs *flag.FlagSet) {
	fs.IntVar(&o.MaxConcurrentReconciles, "max-concurrent-reconciles", 4, "formations reconciled in parallel")
	fs.DurationVar(&o.ResyncPeriod, "resync-period", 15*time.Second, "safety-net poll of every Ready formation")
	fs.DurationVar(&o.RedisTimeout, "redis-timeout", time.Second, "timeout of each command to a redis-server or sentinel")
	fs.DurationVar(&o.PasswordGrace, "password-grace", 10*time.Minute, "how long a rotated data-plane password stays valid beside the new one")
	fs.DurationVar(&o.MaxRetryDelay, "max-retry-delay", 5*time.Second, "longest backoff before a failed reconcile of a formation is retried")
}

// Dependencies are the backends the controller talks to; nil fields get the
// real implementations.
type Dependencies struct {
	Incus   incus.ServerSource
	Redis   redisadmin.Dialer
	Metrics *metrics.Operator
	// Canary nil: a redisclient.Prober whose hits and misses are counted
	// in the manager's metrics (subsystem "canary").
	Canary CanaryProber
	// Watcher nil: the real Sentinel event watcher, which triggers a
	// reconcile on every event.
	Watcher SentinelWatcher
}

// SentinelWatcher is what the controller needs of the Sentinel event
// watcher (internal/sentinel); tests on fake backends use a stub.
type SentinelWatcher interface {
	Watch(key client.ObjectKey, creds redisadmin.Credentials, targets []sentinel.Target)
	Forget(key client.ObjectKey)
	Events(key client.ObjectKey) []sentinel.Event
	// Switches are the recent master switches, each with Sentinel's config
	// epoch (0 when unknown), oldest first.
	Switches(key client.ObjectKey) []sentinel.Switch
}

// secretRefIndex indexes formations by the Secrets they read.
const secretRefIndex = ".spec.secretRefs"

// The manager's permissions, each used by the code (reviewed in
// docs/security.md): formations are read and patched (finalizer), their
// status written, their finalizers subresource updated (owner references
// with blockOwnerDeletion on the connection Secret); Secrets are read and
// watched (password Secrets, remote Incus Secret) and the connection Secret
// and the password state Secret are created, updated and deleted; Events are recorded.
// +kubebuilder:rbac:groups=redis.incusops.io,resources=redissentinelformations,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups=redis.incusops.io,resources=redissentinelformations/status,verbs=get;patch
// +kubebuilder:rbac:groups=redis.incusops.io,resources=redissentinelformations/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;update;delete
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// SetupWithManager registers the formation controller with a manager.
func SetupWithManager(mgr ctrl.Manager, opts Options, deps Dependencies) error {
	if opts.MaxRetryDelay <= 0 {
		return fmt.Errorf("--max-retry-delay must be positive, got %s", opts.MaxRetryDelay)
	}
	if deps.Incus == nil {
		deps.Incus = incus.NewConnector()
	}
	if deps.Redis == nil {
		deps.Redis = redisadmin.NewGoRedisDialer(opts.RedisTimeout)
		redisadmin.RouteGoRedisLogs(mgr.GetLogger().WithName("go-redis"))
	}
	if deps.Metrics == nil {
		deps.Metrics = metrics.NewOperator(ctrlmetrics.Registry)
	}
	guard := safe.Guard{Log: mgr.GetLogger().WithName("recovered"), Count: deps.Metrics.PanicRecovered}
	if deps.Canary == nil {
		deps.Canary = redisclient.NewProber(redisclient.Options{Metrics: metrics.NewCache(ctrlmetrics.Registry), MaxRetries: -1, DialerRetries: 1})
	}
	// Sentinel events enqueue their formation through this channel.
	triggers := make(chan event.GenericEvent, 1024)
	if deps.Watcher == nil {
		w := sentinel.New(mgr.GetLogger().WithName("sentinel-watcher"), guard, func(key types.NamespacedName, e sentinel.Event) {
			if e.Type != "subscribed" {
				deps.Metrics.SentinelEvent(key.Namespace, key.Name, e.Type)
			}
			f := &redisv1alpha1.RedisSentinelFormation{}
			f.Namespace, f.Name = key.Namespace, key.Name
			triggers <- event.GenericEvent{Object: f}
		})
		if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
			<-ctx.Done()
			w.Stop()
			return nil
		})); err != nil {
			return err
		}
		deps.Watcher = w
	}
	r := &FormationReconciler{
		Client:    mgr.GetClient(),
		APIReader: mgr.GetAPIReader(),
		Recorder:  mgr.GetEventRecorder("redis-sentinel-operator"),
		Incus:     deps.Incus,
		Redis:     deps.Redis,
		Metrics:   deps.Metrics,
		Canary:    newCanary(deps.Canary, deps.Metrics, guard),
		Watcher:   deps.Watcher,
		Guard:     guard,
		Options:   opts,
	}
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &redisv1alpha1.RedisSentinelFormation{}, secretRefIndex, referencedSecrets); err != nil {
		return err
	}
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &redisv1alpha1.RedisSentinelFormation{}, hostIndex, formationHostName); err != nil {
		return err
	}
	hosts := &IncusHostReconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Incus: deps.Incus, Options: opts}
	if err := ctrl.NewControllerManagedBy(mgr).
		For(&redisv1alpha1.IncusHost{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		WithOptions(controller.Options{RateLimiter: retryLimiter(opts.MaxRetryDelay), RecoverPanic: ptr.To(true)}).
		Complete(hosts); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		WatchesRawSource(source.Channel(triggers, &handler.EnqueueRequestForObject{})).
		For(&redisv1alpha1.RedisSentinelFormation{}, builder.WithPredicates(predicate.Or(predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}))).
		Owns(&corev1.Secret{}).
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.formationsReading)).
		Watches(&redisv1alpha1.IncusHost{}, handler.EnqueueRequestsFromMapFunc(r.formationsOnHost), builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&corev1.Namespace{}, handler.EnqueueRequestsFromMapFunc(r.formationsIn), builder.WithPredicates(predicate.LabelChangedPredicate{})).
		WithOptions(controller.Options{MaxConcurrentReconciles: opts.MaxConcurrentReconciles, RateLimiter: retryLimiter(opts.MaxRetryDelay), RecoverPanic: ptr.To(true)}).
		Complete(r)
}

// retryLimiter is controller-runtime's default rate limiter (per-item
// exponential backoff from 5 ms, and an overall 10/s bucket with a burst of
// 100) with the per-item backoff capped at maxDelay.
func retryLimiter(maxDelay time.Duration) workqueue.TypedRateLimiter[reconcile.Request] {
	return workqueue.NewTypedMaxOfRateLimiter(
		workqueue.NewTypedItemExponentialFailureRateLimiter[reconcile.Request](5*time.Millisecond, maxDelay),
		&workqueue.TypedBucketRateLimiter[reconcile.Request]{Limiter: rate.NewLimiter(rate.Limit(10), 100)},
	)
}

func referencedSecrets(obj client.Object) []string {
	f := obj.(*redisv1alpha1.RedisSentinelFormation)
	return []string{f.Spec.Auth.PasswordSecretRef.Name, f.Spec.Auth.SentinelPasswordSecretRef.Name}
}

// hostIndex indexes formations by the IncusHost they live on ("" while
// they wait for a default host).
const hostIndex = ".hostName"

func formationHostName(obj client.Object) []string {
	f := obj.(*redisv1alpha1.RedisSentinelFormation)
	if f.Spec.Incus.HostRef != "" {
		return []string{f.Spec.Incus.HostRef}
	}
	return []string{f.Status.IncusHost}
}

// formationsOnHost maps a changed IncusHost to the formations on it, and to
// those without a host yet (it may have become the default).
func (r *FormationReconciler) formationsOnHost(ctx context.Context, host client.Object) []reconcile.Request {
	var reqs []reconcile.Request
	for _, name := range []string{host.GetName(), ""} {
		reqs = append(reqs, r.formationsMatching(ctx, "IncusHost "+host.GetName(), client.MatchingFields{hostIndex: name})...)
	}
	return reqs
}

// formationsIn maps a namespace whose labels changed to its formations: a
// host's namespace selector may admit them now.
func (r *FormationReconciler) formationsIn(ctx context.Context, ns client.Object) []reconcile.Request {
	return r.formationsMatching(ctx, "namespace "+ns.GetName(), client.InNamespace(ns.GetName()))
}

func (r *FormationReconciler) formationsMatching(ctx context.Context, what string, opts ...client.ListOption) []reconcile.Request {
	var list redisv1alpha1.RedisSentinelFormationList
	if err := r.List(ctx, &list, opts...); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "cannot list the formations a change concerns; they will pick it up at their next resync", "changed", what)
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for _, f := range list.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&f)})
	}
	return reqs
}

// formationsReading maps a Secret to the formations that read it, so a fixed
// or rotated Secret is picked up at once.
func (r *FormationReconciler) formationsReading(ctx context.Context, secret client.Object) []reconcile.Request {
	return r.formationsMatching(ctx, "Secret "+secret.GetName(), client.InNamespace(secret.GetNamespace()), client.MatchingFields{secretRefIndex: secret.GetName()})
}
