package controllers

import (
	"context"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
)

// FormationReconciler reconciles RedisSentinelFormation resources.
type FormationReconciler struct {
	client.Client
	Options Options
}

// Reconcile brings one formation towards its spec.
func (r *FormationReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var formation redisv1alpha1.RedisSentinelFormation
	if err := r.Get(ctx, req.NamespacedName, &formation); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	return ctrl.Result{}, nil
}
