// Package controllers holds the RedisSentinelFormation reconciler. A
// reconcile is one pass: observe (observe.go) into one value, decide
// (decide.go, rotation.go, connection.go; pure) the actions, run them
// (act.go), and write the status (status.go; pure) once at the end.
// Everything the next pass needs is in the API: the formation's status and
// the Secrets it owns.
package controllers

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/internal/incus"
	"github.com/incusops/redis-sentinel-operator/internal/instancewatch"
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
	// MaxRetryDelay caps the exponential backoff after a failed reconcile
	// (controller-runtime's default cap is 1000 s): a formation whose
	// healing failed while a fault lasted is retried soon after it ends.
	MaxRetryDelay time.Duration
	// WatchNamespaces limits the operator to formations (and so Secrets) in
	// these namespaces; empty: every namespace.
	WatchNamespaces []string
	// OperatorNamespace is the namespace the operator runs in; the client
	// certificate Secrets of remote IncusHosts live there.
	OperatorNamespace string
}

// BindFlags registers the options on a flag set.
func (o *Options) BindFlags(fs *flag.FlagSet) {
	// A pass mostly waits on Incus and the servers, not on the CPU: ten
	// workers let ten formations come up (or heal) at once instead of
	// queueing behind each other's container creates.
	fs.IntVar(&o.MaxConcurrentReconciles, "max-concurrent-reconciles", 10, "formations reconciled in parallel")
	fs.DurationVar(&o.ResyncPeriod, "resync-period", 15*time.Second, "safety-net poll of every Ready formation")
	fs.DurationVar(&o.RedisTimeout, "redis-timeout", time.Second, "timeout of each command to a redis-server or sentinel")
	fs.DurationVar(&o.PasswordGrace, "password-grace", 10*time.Minute, "how long a rotated data-plane password stays valid beside the new one")
	fs.DurationVar(&o.MaxRetryDelay, "max-retry-delay", 5*time.Second, "longest backoff before a failed reconcile of a formation is retried")
	fs.Func("watch-namespaces", "comma-separated namespaces whose formations the operator reconciles (default: all)", func(v string) error {
		o.WatchNamespaces = nil
		for _, ns := range strings.Split(v, ",") {
			if ns = strings.TrimSpace(ns); ns != "" {
				o.WatchNamespaces = append(o.WatchNamespaces, ns)
			}
		}
		return nil
	})
	o.OperatorNamespace = cmp.Or(os.Getenv("POD_NAMESPACE"), DefaultOperatorNamespace)
	fs.StringVar(&o.OperatorNamespace, "operator-namespace", o.OperatorNamespace, "the operator's namespace, holding the remote IncusHosts' client certificate Secrets ($POD_NAMESPACE when set)")
}

// The shipped install's names (config/rbac), used in messages that tell an
// admin what to grant.
const (
	DefaultOperatorNamespace = "rsf-system"
	ServiceAccountName       = "rsf-controller-manager"
	// FormationSecretsRole is the ClusterRole a namespace admin binds to the
	// operator's service account in a namespace to let formations there
	// run: it is never bound cluster-wide.
	FormationSecretsRole = "rsf-formation-secrets"
)

// ManagerOptions completes mo with what the controller needs of its
// manager: the cache holds formations (of WatchNamespaces only, when set)
// and never a Secret. Reading a Secret through the cache would start a
// cluster-wide Secret informer, which the operator is not allowed; Secrets
// are read from the API server and watched per namespace (secretWatches).
func (o Options) ManagerOptions(mo ctrl.Options) ctrl.Options {
	if len(o.WatchNamespaces) > 0 {
		mo.Cache.DefaultNamespaces = map[string]cache.Config{}
		for _, ns := range o.WatchNamespaces {
			mo.Cache.DefaultNamespaces[ns] = cache.Config{}
		}
	}
	if mo.Client.Cache == nil {
		mo.Client.Cache = &client.CacheOptions{}
	}
	mo.Client.Cache.DisableFor = append(mo.Client.Cache.DisableFor, &corev1.Secret{})
	return mo
}

// MetricsServer is the metrics endpoint on addr ("0": none). Secure: HTTPS
// where every request is authenticated (TokenReview) and authorized
// (SubjectAccessReview of GET on the path) by the API server, so a scraper
// needs a token bound to the rsf-metrics-reader ClusterRole. Otherwise
// plain HTTP, meant for a loopback address.
func MetricsServer(addr string, secure bool) metricsserver.Options {
	o := metricsserver.Options{BindAddress: addr, SecureServing: secure}
	if secure {
		o.FilterProvider = filters.WithAuthenticationAndAuthorization
	}
	return o
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
	// InstanceWatcher nil: the real Incus lifecycle event watcher over
	// Incus, which triggers a reconcile when a member's instance stops,
	// starts or goes away.
	InstanceWatcher InstanceWatcher
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

// InstanceWatcher is what the controller needs of the Incus lifecycle event
// watcher (internal/instancewatch); tests on fake backends use a stub.
type InstanceWatcher interface {
	// Watch follows these instances of the formation on the connection
	// opts selects.
	Watch(key client.ObjectKey, opts incus.Options, instances []string)
	Forget(key client.ObjectKey)
	// StoppedAt is when Incus reported the instance stopped (zero if it
	// did not since it was watched, or started again).
	StoppedAt(key client.ObjectKey, instance string) time.Time
}

// secretRefIndex indexes formations by the Secrets they read.
const secretRefIndex = ".spec.secretRefs"

// The manager's cluster-wide permissions, each used by the code (reviewed
// in docs/security.md): formations are read and patched (finalizer), their
// status written, their finalizers subresource updated (owner references
// with blockOwnerDeletion on the owned Secrets); Events are recorded; the
// secure metrics endpoint has the API server authenticate and authorize
// its callers. No Secret: Secrets are granted per namespace
// (config/rbac/formation_secrets_role.yaml, bound by a namespace admin) and
// in the operator's namespace (config/rbac/host_credentials_role.yaml).
// +kubebuilder:rbac:groups=redis.incusops.io,resources=redissentinelformations,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups=redis.incusops.io,resources=redissentinelformations/status,verbs=get;patch
// +kubebuilder:rbac:groups=redis.incusops.io,resources=redissentinelformations/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create

// The operator's goroutines that run under its panic guard, by the
// component label of the recovered-panic metric.
const (
	componentObserve = "observe"
	componentAct     = "act"
	componentCanary  = "canary"
)

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
	deps.Metrics.TrackComponents(componentObserve, componentAct, componentCanary, sentinel.Component, instancewatch.Component)
	if deps.Canary == nil {
		deps.Canary = redisclient.NewProber(redisclient.Options{Metrics: metrics.NewCache(ctrlmetrics.Registry), MaxRetries: -1, DialerRetries: 1, BufferSize: redisadmin.BufferSize})
	}
	// Sentinel events, Incus lifecycle events and Secret changes enqueue their formations through
	// this channel.
	triggers := make(chan event.GenericEvent, 1024)
	trigger := func(key types.NamespacedName) {
		f := &redisv1alpha1.RedisSentinelFormation{}
		f.Namespace, f.Name = key.Namespace, key.Name
		triggers <- event.GenericEvent{Object: f}
	}
	if deps.Watcher == nil {
		w := sentinel.New(mgr.GetLogger().WithName("sentinel-watcher"), guard, func(key types.NamespacedName, e sentinel.Event) {
			if e.Type != "subscribed" {
				deps.Metrics.SentinelEvent(key.Namespace, key.Name, e.Type)
			}
			trigger(key)
		})
		if err := stopWithManager(mgr, w.Stop); err != nil {
			return err
		}
		deps.Watcher = w
	}
	if deps.InstanceWatcher == nil {
		w := instancewatch.New(mgr.GetLogger().WithName("instance-watcher"), guard, deps.Incus, trigger)
		if err := stopWithManager(mgr, w.Stop); err != nil {
			return err
		}
		deps.InstanceWatcher = w
	}
	secretsClient, err := metadata.NewForConfigAndClient(mgr.GetConfig(), mgr.GetHTTPClient())
	if err != nil {
		return err
	}
	watchCtx, stopWatches := context.WithCancel(context.Background())
	if err := stopWithManager(mgr, stopWatches); err != nil {
		stopWatches()
		return err
	}
	r := &FormationReconciler{
		Client:          mgr.GetClient(),
		APIReader:       mgr.GetAPIReader(),
		Recorder:        mgr.GetEventRecorder("redis-sentinel-operator"),
		Incus:           deps.Incus,
		Redis:           deps.Redis,
		Metrics:         deps.Metrics,
		Canary:          newCanary(deps.Canary, deps.Metrics, guard),
		Watcher:         deps.Watcher,
		InstanceWatcher: deps.InstanceWatcher,
		Guard:           guard,
		Options:         opts,
	}
	// A changed Secret triggers the formation owning it and those reading it.
	r.SecretWatches = newSecretWatches(watchCtx, secretsClient, mgr.GetLogger().WithName("secret-watches"), func(secret *metav1.PartialObjectMetadata) {
		for _, req := range r.formationsOf(watchCtx, secret) {
			trigger(req.NamespacedName)
		}
	})
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
		Watches(&redisv1alpha1.IncusHost{}, handler.EnqueueRequestsFromMapFunc(r.formationsOnHost), builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&corev1.Namespace{}, handler.EnqueueRequestsFromMapFunc(r.formationsIn), builder.WithPredicates(predicate.LabelChangedPredicate{})).
		WithOptions(controller.Options{MaxConcurrentReconciles: opts.MaxConcurrentReconciles, RateLimiter: retryLimiter(opts.MaxRetryDelay), RecoverPanic: ptr.To(true)}).
		Complete(r)
}

// stopWithManager calls stop when the manager stops.
func stopWithManager(mgr ctrl.Manager, stop func()) error {
	return mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		<-ctx.Done()
		stop()
		return nil
	}))
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
	names := []string{f.Spec.Auth.PasswordSecretRef.Name, f.Spec.Auth.SentinelPasswordSecretRef.Name}
	if tlsEnabled(f) && f.Spec.TLS.SecretName != "" {
		names = append(names, f.Spec.TLS.SecretName)
	}
	return names
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

// formationsOf maps a Secret to the formation that owns it and those that
// read it, so a fixed or rotated Secret is picked up at once.
func (r *FormationReconciler) formationsOf(ctx context.Context, secret client.Object) []reconcile.Request {
	var reqs []reconcile.Request
	if owner := metav1.GetControllerOfNoCopy(secret); owner != nil && owner.Kind == "RedisSentinelFormation" && owner.APIVersion == redisv1alpha1.GroupVersion.String() {
		reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: secret.GetNamespace(), Name: owner.Name}})
	}
	return append(reqs, r.formationsMatching(ctx, "Secret "+secret.GetName(), client.InNamespace(secret.GetNamespace()), client.MatchingFields{secretRefIndex: secret.GetName()})...)
}
