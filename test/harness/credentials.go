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
// the connection Secret may not. With TLS on, they carry the operator's
// TLS material.
func AdminCredentials(ctx context.Context, k8s client.Client, f *redisv1alpha1.RedisSentinelFormation) (redisadmin.Credentials, error) {
	var s corev1.Secret
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: f.Namespace, Name: f.Name + "-password-state"}, &s); err != nil {
		return redisadmin.Credentials{}, fmt.Errorf("reading the password state Secret: %w", err)
	}
	pw := string(s.Data[string(acl.Admin)])
	if pw == "" {
		return redisadmin.Credentials{}, fmt.Errorf("Secret %s has no %q key", s.Name, acl.Admin)
	}
	creds := redisadmin.Credentials{Username: acl.AdminUser, Password: pw}
	if f.Spec.TLS == nil || !f.Spec.TLS.Enabled {
		return creds, nil
	}
	// The operator's own TLS material, in the formation's TLS Secret: its
	// CA's client certificate, or its copy of the user Secret.
	cert, key := "client.crt", "client.key"
	if f.Spec.TLS.SecretName != "" {
		cert, key = "tls.crt", "tls.key"
	}
	var t corev1.Secret
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: f.Namespace, Name: f.Name + "-tls"}, &t); err != nil {
		return redisadmin.Credentials{}, fmt.Errorf("reading the TLS Secret: %w", err)
	}
	if t.Data["previous-client.crt"] != nil { // a change of CA is under way
		cert, key = "previous-client.crt", "previous-client.key"
	}
	creds.TLS = redisadmin.TLSMaterial{CA: string(t.Data["ca.crt"]), Cert: string(t.Data[cert]), Key: string(t.Data[key])}
	return creds, nil
}
