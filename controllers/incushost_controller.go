package controllers

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/internal/incus"
)

// Reasons of an IncusHost's Reachable condition.
const (
	ReasonHostConnected = "Connected"
	ReasonHostInUse     = "FormationsOnHost"
)

// hostPoll is how often a host is checked again when nothing changed: a
// server that went away or came back shows in its status within it.
const hostPoll = time.Minute

// Hosts are read by both reconcilers and their status written by this one;
// patch adds and removes the in-use finalizer.
// +kubebuilder:rbac:groups=redis.incusops.io,resources=incushosts,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups=redis.incusops.io,resources=incushosts/status,verbs=get;patch

// IncusHostReconciler keeps each IncusHost's status: whether the operator
// can reach it with the configured credentials, its version and cluster.
type IncusHostReconciler struct {
	client.Client
	// APIReader reads the client certificate Secrets directly: the
	// operator caches no Secret of its own namespace.
	APIReader client.Reader
	Incus     incus.ServerSource
	Options   Options
}

// Reconcile connects to the host, reads its server information and writes
// it into status.
func (r *IncusHostReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	host := &redisv1alpha1.IncusHost{}
	if err := r.Get(ctx, req.NamespacedName, host); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !host.DeletionTimestamp.IsZero() {
		return r.release(ctx, host)
	}
	if !controllerutil.ContainsFinalizer(host, hostFinalizer) {
		patch := client.MergeFrom(host.DeepCopy())
		controllerutil.AddFinalizer(host, hostFinalizer)
		if err := r.Patch(ctx, host, patch); err != nil {
			return ctrl.Result{}, err
		}
	}
	base := host.DeepCopy()
	info, reason, err := r.check(ctx, host)
	st := &host.Status
	cond := metav1.Condition{Type: redisv1alpha1.HostConditionReachable, Status: metav1.ConditionTrue, Reason: ReasonHostConnected,
		Message: fmt.Sprintf("connected; Incus %s", info.Version), ObservedGeneration: host.Generation}
	if err != nil {
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, reason, err.Error()
		ctrl.LoggerFrom(ctx).Info("IncusHost not reachable; checking again later", "reason", reason, "error", err.Error(), "retryIn", hostPoll)
	} else {
		st.ServerVersion, st.Clustered, st.ClusterMembers = info.Version, info.Clustered, nil
		for _, m := range info.Members {
			st.ClusterMembers = append(st.ClusterMembers, fmt.Sprintf("%s (%s)", m.Name, m.Status))
		}
	}
	meta.SetStatusCondition(&st.Conditions, cond)
	st.ObservedGeneration = host.Generation
	if !equality.Semantic.DeepEqual(base.Status, host.Status) {
		if err := r.Status().Patch(ctx, host, client.MergeFrom(base)); err != nil {
			return ctrl.Result{}, err
		}
	}
	return ctrl.Result{RequeueAfter: hostPoll}, nil
}

// check connects and reads the server; on failure it also says why, as a
// condition reason.
func (r *IncusHostReconciler) check(ctx context.Context, host *redisv1alpha1.IncusHost) (incus.ServerInfo, string, error) {
	opts, err := hostOptions(ctx, r.APIReader, r.Options.OperatorNamespace, host, "")
	if rf := (*refusal)(nil); errors.As(err, &rf) {
		return incus.ServerInfo{}, rf.reason, err
	}
	if err != nil {
		return incus.ServerInfo{}, ReasonIncusUnreachable, err
	}
	srv, err := r.Incus.Server(ctx, opts)
	if err != nil {
		return incus.ServerInfo{}, connectionReason(err), err
	}
	info, err := srv.Info(ctx)
	if err != nil {
		// A cached connection may have outlived the server; reconnect next time.
		r.Incus.Forget(opts)
		return incus.ServerInfo{}, connectionReason(err), err
	}
	return info, "", nil
}

// hostFinalizer keeps a host that formations live on: deleting it would
// leave their containers unmanaged and their own deletion stuck.
const hostFinalizer = "redis.incusops.io/formations"

// hostInUsePoll is how often a deleted host that formations still use is
// looked at again.
const hostInUsePoll = 5 * time.Second

// release lets a deleted host go once no formation lives on it; until then
// it says which formations hold it.
func (r *IncusHostReconciler) release(ctx context.Context, host *redisv1alpha1.IncusHost) (ctrl.Result, error) {
	var formations redisv1alpha1.RedisSentinelFormationList
	if err := r.List(ctx, &formations, client.MatchingFields{hostIndex: host.Name}); err != nil {
		return ctrl.Result{}, err
	}
	if n := len(formations.Items); n > 0 {
		names := make([]string, 0, n)
		for _, f := range formations.Items {
			names = append(names, f.Namespace+"/"+f.Name)
		}
		ctrl.LoggerFrom(ctx).Info("IncusHost deleted but formations still live on it; it is kept until they are deleted", "formations", names)
		base := host.DeepCopy()
		meta.SetStatusCondition(&host.Status.Conditions, metav1.Condition{Type: redisv1alpha1.HostConditionInUse, Status: metav1.ConditionTrue, Reason: ReasonHostInUse,
			Message: fmt.Sprintf("deletion waits for %d formation(s) on this host: %s", n, strings.Join(names, ", ")), ObservedGeneration: host.Generation})
		if !equality.Semantic.DeepEqual(base.Status, host.Status) {
			if err := r.Status().Patch(ctx, host, client.MergeFrom(base)); err != nil {
				return ctrl.Result{}, client.IgnoreNotFound(err)
			}
		}
		return ctrl.Result{RequeueAfter: hostInUsePoll}, nil
	}
	if !controllerutil.ContainsFinalizer(host, hostFinalizer) {
		return ctrl.Result{}, nil
	}
	patch := client.MergeFrom(host.DeepCopy())
	controllerutil.RemoveFinalizer(host, hostFinalizer)
	return ctrl.Result{}, client.IgnoreNotFound(r.Patch(ctx, host, patch))
}
