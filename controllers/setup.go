// Package controllers holds the RedisSentinelFormation reconciler. A reconcile
// runs small ordered phases (finalizer, secrets, instances, configuration,
// topology, status); each lives in its own file.
package controllers

import (
	"flag"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/controller"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
)

// Options are the controller's tunables, bound to command-line flags.
type Options struct {
	// MaxConcurrentReconciles is how many formations reconcile in parallel.
	MaxConcurrentReconciles int
	// ResyncPeriod is the safety-net poll of a formation when nothing
	// triggers a reconcile.
	ResyncPeriod time.Duration
}

// BindFlags registers the options on a flag set.
func (o *Options) BindFlags(fs *flag.FlagSet) {
	fs.IntVar(&o.MaxConcurrentReconciles, "max-concurrent-reconciles", 4, "formations reconciled in parallel")
	fs.DurationVar(&o.ResyncPeriod, "resync-period", 15*time.Second, "safety-net poll of every formation")
}

// +kubebuilder:rbac:groups=redis.incusops.io,resources=redissentinelformations,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=redis.incusops.io,resources=redissentinelformations/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=redis.incusops.io,resources=redissentinelformations/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;update;patch
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// SetupWithManager registers the formation controller with a manager.
func SetupWithManager(mgr ctrl.Manager, opts Options) error {
	r := &FormationReconciler{
		Client:  mgr.GetClient(),
		Options: opts,
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&redisv1alpha1.RedisSentinelFormation{}).
		WithOptions(controller.Options{MaxConcurrentReconciles: opts.MaxConcurrentReconciles}).
		Complete(r)
}
