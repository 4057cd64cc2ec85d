package controllers

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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

// reconcileSecrets reads both passwords and applies the environment's
// password policy. A failure blocks the formation with SecretsValid=False.
func (r *FormationReconciler) reconcileSecrets(ctx context.Context, s *formationState) error {
	f := s.f
	strict := f.Spec.Environment != redisv1alpha1.EnvironmentLab
	password, err := r.readPassword(ctx, f, "spec.auth.passwordSecretRef", f.Spec.Auth.PasswordSecretRef, strict)
	if err == nil {
		s.creds.Password = password
		s.creds.SentinelPassword, err = r.readPassword(ctx, f, "spec.auth.sentinelPasswordSecretRef", f.Spec.Auth.SentinelPasswordSecretRef, strict)
	}
	if err == nil && strict && s.creds.Password == s.creds.SentinelPassword {
		err = &secretError{ReasonPasswordRefused, "the data-plane and Sentinel passwords are the same Secret value; outside the lab they must differ"}
	}
	var se *secretError
	if errors.As(err, &se) {
		changed := meta.SetStatusCondition(&f.Status.Conditions, metav1.Condition{
			Type: redisv1alpha1.ConditionSecretsValid, Status: metav1.ConditionFalse,
			Reason: se.reason, Message: se.message, ObservedGeneration: f.Generation,
		})
		if changed {
			r.Recorder.Eventf(f, nil, corev1.EventTypeWarning, se.reason, "ValidateSecrets", "%s; nothing is created or changed until it is fixed", se.message)
			s.log.Info("secrets refused; waiting for them to change", "reason", se.reason, "message", se.message)
		}
		return errBlocked
	}
	if err != nil {
		return err
	}
	meta.SetStatusCondition(&f.Status.Conditions, metav1.Condition{
		Type: redisv1alpha1.ConditionSecretsValid, Status: metav1.ConditionTrue,
		Reason: ReasonSecretsValid, Message: "both password Secrets are present and pass the " + string(f.Spec.Environment) + " policy",
		ObservedGeneration: f.Generation,
	})
	s.admin = r.Redis.Admin(s.creds)
	return nil
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
