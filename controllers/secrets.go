package controllers

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/internal/passwords"
)

// Reasons of the SecretsValid condition.
const (
	ReasonSecretsValid     = "SecretsValid"
	ReasonSecretNotFound   = "SecretNotFound"
	ReasonSecretKeyMissing = "SecretKeyMissing"
	ReasonPasswordRefused  = "PasswordRefused"
	// ReasonSecretAccessForbidden: the namespace's admin has not granted the
	// operator its Secrets (a RoleBinding to FormationSecretsRole).
	ReasonSecretAccessForbidden = "SecretAccessForbidden"
)

// secretError is a Secret problem the user must fix; nothing is created or
// changed while it lasts.
type secretError struct{ reason, message string }

func (e *secretError) Error() string { return e.message }

// readPasswords reads both passwords and applies the environment's password
// policy. A *secretError blocks the formation with SecretsValid=False. Once
// they could be read, the namespace's Secrets are watched.
func (r *FormationReconciler) readPasswords(ctx context.Context, f *redisv1alpha1.RedisSentinelFormation) (password, sentinelPassword string, err error) {
	strict := f.Spec.Environment != redisv1alpha1.EnvironmentLab
	password, err = r.readPassword(ctx, f, "spec.auth.passwordSecretRef", f.Spec.Auth.PasswordSecretRef, strict)
	if err == nil {
		sentinelPassword, err = r.readPassword(ctx, f, "spec.auth.sentinelPasswordSecretRef", f.Spec.Auth.SentinelPasswordSecretRef, strict)
	}
	// Watched once readable, so that a created or fixed Secret is seen at once.
	if se, ok := asSecretError(err); err == nil || ok && se.reason != ReasonSecretAccessForbidden {
		r.SecretWatches.ensure(client.ObjectKeyFromObject(f))
	}
	if err == nil && strict && password == sentinelPassword {
		err = &secretError{ReasonPasswordRefused, "the data-plane and Sentinel passwords are the same Secret value; outside the lab they must differ"}
	}
	return password, sentinelPassword, err
}

// forbiddenSecrets is the block of a formation whose namespace has not
// granted the operator its Secrets, with the grant a namespace admin makes.
func (r *FormationReconciler) forbiddenSecrets(f *redisv1alpha1.RedisSentinelFormation, name string) *secretError {
	return &secretError{ReasonSecretAccessForbidden, fmt.Sprintf(
		"the operator may not read Secret %s/%s: namespace %s has not granted it its Secrets; a namespace admin grants them with `kubectl -n %s create rolebinding %s --clusterrole=%s --serviceaccount=%s:%s`",
		f.Namespace, name, f.Namespace, f.Namespace, FormationSecretsRole, FormationSecretsRole, r.Options.OperatorNamespace, ServiceAccountName)}
}

// readUserSecret reads, live, the Secret name that the spec's field names.
// One that does not exist is a *secretError with reason notFound, one the
// operator may not read a *secretError saying who grants it.
func (r *FormationReconciler) readUserSecret(ctx context.Context, f *redisv1alpha1.RedisSentinelFormation, field, name, notFound string) (*corev1.Secret, error) {
	secret := &corev1.Secret{}
	err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: f.Namespace, Name: name}, secret)
	switch {
	case apierrors.IsNotFound(err):
		return nil, &secretError{notFound, fmt.Sprintf("Secret %s/%s named by %s does not exist", f.Namespace, name, field)}
	case apierrors.IsForbidden(err):
		return nil, r.forbiddenSecrets(f, name)
	case err != nil:
		return nil, fmt.Errorf("reading Secret %s/%s: %w", f.Namespace, name, err)
	}
	return secret, nil
}

func (r *FormationReconciler) readPassword(ctx context.Context, f *redisv1alpha1.RedisSentinelFormation, field string, ref redisv1alpha1.SecretKeyReference, strict bool) (string, error) {
	secret, err := r.readUserSecret(ctx, f, field, ref.Name, ReasonSecretNotFound)
	if err != nil {
		return "", err
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
