package controllers

import (
	"context"
	"fmt"
	"maps"
	"net/url"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/internal/config"
)

// connectionSecretName is the Secret backends mount.
func connectionSecretName(f *redisv1alpha1.RedisSentinelFormation) string {
	return f.Name + "-connection"
}

// sentinelAddresses are ip:port of every member that has an address, in
// member order.
func sentinelAddresses(s *formationState) []string {
	var addrs []string
	for _, m := range s.members {
		if m.instance != nil && m.instance.IPv4 != "" {
			addrs = append(addrs, m.instance.IPv4+":"+strconv.Itoa(int(s.f.Spec.Redis.SentinelPort)))
		}
	}
	return addrs
}

// connectionData is the seed's backend contract. REDIS_URL carries the
// password and DB; in Sentinel mode its host is not used, so it names the
// master set instead of an address that changes on failover.
func connectionData(s *formationState, addrs []string) map[string][]byte {
	f := s.f
	u := url.URL{
		Scheme: "redis",
		User:   url.UserPassword("", s.creds.Password),
		Host:   f.Spec.MasterName + ":" + strconv.Itoa(int(f.Spec.Redis.Port)),
		Path:   "/0",
	}
	return map[string][]byte{
		config.EnvSentinelAddrs:    []byte(strings.Join(addrs, ",")),
		config.EnvMasterName:       []byte(f.Spec.MasterName),
		config.EnvSentinelPassword: []byte(s.creds.SentinelPassword),
		config.EnvURL:              []byte(u.String()),
	}
}

// reconcileConnection writes the connection Secret when its content changes
// (addresses, passwords, master name); an unchanged formation writes nothing.
func (r *FormationReconciler) reconcileConnection(ctx context.Context, s *formationState) error {
	addrs := sentinelAddresses(s)
	if len(addrs) == 0 {
		return nil
	}
	f := s.f
	want := connectionData(s, addrs)
	secret := &corev1.Secret{}
	err := r.Get(ctx, client.ObjectKey{Namespace: f.Namespace, Name: connectionSecretName(f)}, secret)
	switch {
	case apierrors.IsNotFound(err):
		secret = &corev1.Secret{Type: corev1.SecretTypeOpaque, Data: want}
		secret.Namespace, secret.Name = f.Namespace, connectionSecretName(f)
		secret.Labels = map[string]string{"app.kubernetes.io/managed-by": "redis-sentinel-operator", "redis.incusops.io/formation": f.Name}
		if err := controllerutil.SetControllerReference(f, secret, r.Scheme()); err != nil {
			return err
		}
		if err := r.Create(ctx, secret); err != nil {
			return fmt.Errorf("creating Secret %s: %w", secret.Name, err)
		}
		r.Recorder.Eventf(f, nil, corev1.EventTypeNormal, "ConnectionSecretCreated", "WriteConnection", "wrote Secret %s for backends", secret.Name)
	case err != nil:
		return err
	case !metav1.IsControlledBy(secret, f):
		s.degrade("ConnectionSecretNotOwned", "Secret %s exists and is not owned by this formation; it is left untouched", secret.Name)
		return nil
	case !maps.EqualFunc(secret.Data, want, func(a, b []byte) bool { return string(a) == string(b) }):
		secret.Data = want
		if err := r.Update(ctx, secret); err != nil {
			return fmt.Errorf("updating Secret %s: %w", secret.Name, err)
		}
		r.Recorder.Eventf(f, nil, corev1.EventTypeNormal, "ConnectionSecretUpdated", "WriteConnection", "updated Secret %s (sentinel addresses, master name or passwords changed)", secret.Name)
	}
	f.Status.Connection = &redisv1alpha1.ConnectionInfo{
		SentinelAddresses: addrs,
		MasterName:        f.Spec.MasterName,
		SecretName:        connectionSecretName(f),
	}
	return nil
}
