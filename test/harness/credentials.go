package harness

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/internal/acl"
	"github.com/incusops/redis-sentinel-operator/internal/redisadmin"
)

// AdminCredentials are the operator's own user on a formation's
// redis-servers and sentinels, as the members accept it now (the password
// state Secret's current admin password): what a test uses to act as an
// administrator (CONFIG, SENTINEL SET, DEBUG...), which the backend user in
// the connection Secret may not.
func AdminCredentials(ctx context.Context, k8s client.Client, f *redisv1alpha1.RedisSentinelFormation) (redisadmin.Credentials, error) {
	var s corev1.Secret
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: f.Namespace, Name: f.Name + "-password-state"}, &s); err != nil {
		return redisadmin.Credentials{}, fmt.Errorf("reading the password state Secret: %w", err)
	}
	pw := string(s.Data[string(acl.Admin)])
	if pw == "" {
		return redisadmin.Credentials{}, fmt.Errorf("Secret %s has no %q key", s.Name, acl.Admin)
	}
	return redisadmin.Credentials{Username: acl.AdminUser, Password: pw}, nil
}
