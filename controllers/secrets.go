package controllers

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/internal/passwords"
)

// Reasons of the SecretsValid condition.
const (
	ReasonSecretsValid     = "SecretsValid"
	ReasonSecretNotFound   = "SecretNotFound"
	ReasonSecretKeyMissing = "SecretKeyMissing"
	ReasonPasswordRefused  = "PasswordRefused"
)

// secretError is a Secret problem the user must fix; nothing is created or
// changed while it lasts.
type secretError struct{ reason, message string }

func (e *secretError) Error() string { return e.message }

// readPasswords reads both passwords and applies the environment's password
// policy. A *secretError blocks the formation with SecretsValid=False.
func (r *FormationReconciler) readPasswords(ctx context.Context, f *redisv1alpha1.RedisSentinelFormation) (password, sentinelPassword string, err error) {
	strict := f.Spec.Environment != redisv1alpha1.EnvironmentLab
	password, err = r.readPassword(ctx, f, "spec.auth.passwordSecretRef", f.Spec.Auth.PasswordSecretRef, strict)
	if err == nil {
		sentinelPassword, err = r.readPassword(ctx, f, "spec.auth.sentinelPasswordSecretRef", f.Spec.Auth.SentinelPasswordSecretRef, strict)
	}
	if err == nil && strict && password == sentinelPassword {
		err = &secretError{ReasonPasswordRefused, "the data-plane and Sentinel passwords are the same Secret value; outside the lab they must differ"}
	}
	return password, sentinelPassword, err
}

func (r *FormationReconciler) readPassword(ctx context.Context, f *redisv1alpha1.RedisSentinelFormation, field string, ref redisv1alpha1.SecretKeyReference, strict bool) (string, error) {
	var secret corev1.Secret
	err := r.Get(ctx, types.NamespacedName{Namespace: f.Namespace, Name: ref.Name}, &secret)
	if apierrors.IsNotFound(err) {
		return "", &secretError{ReasonSecretNotFound, fmt.Sprintf("Secret %s/%s named by %s does not exist", f.Namespace, ref.Name, field)}
	}
	if err != nil {
		return "", fmt.Errorf("reading Secret %s/%s: %w", f.Namespace, ref.Name, err)
	}
	value, ok := secret.Data[ref.Key]
	if !ok {
		return "", &secretError{ReasonSecretKeyMissing, fmt.Sprintf("Secret %s/%s has no key %q (%s.key)", f.Namespace, ref.Name, ref.Key, field)}
	}
	if err := passwords.Check(string(value), strict); err != nil {
		return "", &secretError{ReasonPasswordRefused, fmt.Sprintf("the password in Secret %s/%s key %q (%s) %v", f.Namespace, ref.Name, ref.Key, field, err)}
	}
	return string(value), nil
}

// asSecretError returns the *secretError in err, if any.
func asSecretError(err error) (*secretError, bool) {
	var se *secretError
	ok := errors.As(err, &se)
	return se, ok
}
