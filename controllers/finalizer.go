package controllers

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
)

// finalizerName guards a formation's Incus instances: the resource goes away
// only after they do. It is added just before the first instance is created;
// if Incus is gone for good, removing it by hand releases the resource.
const finalizerName = "redis.incusops.io/instances"

// Ownership keys on every instance the operator creates. The operator never
// touches an instance whose formation UID is not its formation's.
const (
	keyFormationUID = "user.rsf.formation-uid"
	keyFormation    = "user.rsf.formation"
	keyMember       = "user.rsf.member"
	// keyTemplate is the digest of the spec fields the container was built
	// from (image, profiles, network, pool, target, limits); a different
	// digest means the member must be replaced.
	keyTemplate = "user.rsf.template"
)

func addFinalizer(f *redisv1alpha1.RedisSentinelFormation) {
	controllerutil.AddFinalizer(f, finalizerName)
}

// finalize deletes exactly the instances carrying the formation's UID and
// the Secrets it owns, forgets it, then releases the resource.
func (r *FormationReconciler) finalize(ctx context.Context, f *redisv1alpha1.RedisSentinelFormation) (ctrl.Result, error) {
	log := ctrl.LoggerFrom(ctx)
	if !controllerutil.ContainsFinalizer(f, finalizerName) {
		r.forget(client.ObjectKeyFromObject(f))
		return ctrl.Result{}, nil
	}
	srv, _, _, err := r.connectIncus(ctx, f, false)
	if err != nil {
		r.Recorder.Eventf(f, nil, corev1.EventTypeWarning, "DeleteBlocked", "Delete",
			"cannot reach Incus to delete the instances; retrying: %v", err)
		return ctrl.Result{}, err
	}
	owned, err := srv.ListInstances(ctx, keyFormationUID, string(f.UID))
	if err != nil {
		return ctrl.Result{}, fmt.Errorf("listing the formation's instances: %w", err)
	}
	for _, inst := range owned {
		log.Info("deleting instance of a deleted formation", "instance", inst.Name)
		if err := srv.DeleteInstance(ctx, inst.Name); err != nil {
			return ctrl.Result{}, fmt.Errorf("deleting instance %s: %w", inst.Name, err)
		}
		r.event(f, corev1.EventTypeNormal, "InstanceDeleted", "Delete", inst.Name, "deleted Incus instance %s", inst.Name)
	}
	// The owner references let a cluster's garbage collector do this too;
	// control planes without one (the lab's) would keep the passwords.
	for _, name := range []string{connectionSecretName(f), passwordStateSecretName(f), internalSecretName(f)} {
		secret := &corev1.Secret{}
		err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: f.Namespace, Name: name}, secret)
		if err == nil && metav1.IsControlledBy(secret, f) {
			err = r.Delete(ctx, secret)
		}
		if client.IgnoreNotFound(err) != nil {
			return ctrl.Result{}, fmt.Errorf("deleting Secret %s: %w", name, err)
		}
	}
	r.forget(client.ObjectKeyFromObject(f))
	patch := client.MergeFrom(f.DeepCopy())
	controllerutil.RemoveFinalizer(f, finalizerName)
	if err := r.Patch(ctx, f, patch); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	log.Info("formation deleted with its instances", "instances", len(owned))
	return ctrl.Result{}, nil
}
