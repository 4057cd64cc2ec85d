package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/controllers"
)

// TestBadInput: every bad input gets a clear condition and nothing is
// created, adopted or deleted. (An instance in the way of a member's is
// TestInstanceNameClash.)
func TestBadInput(t *testing.T) {
	stack(t)
	// A host that allows Incus objects that do not exist, so that the
	// operator's own check of them is reached.
	permissive := uniqueName("permissive")
	newHost(t, permissive, func(h *redisv1alpha1.IncusHost) {
		h.Spec.NamespaceSelector = &metav1.LabelSelector{}
		h.Spec.Allowed.Images = []string{labImage, "no-such-image"}
		h.Spec.Allowed.Profiles = []string{labProfile, "no-such-profile"}
		h.Spec.Allowed.Networks = []string{"rsfbr0", "nosuchbr0"}
	})
	missing := func(change func(*redisv1alpha1.IncusSpec)) formationOpts {
		return formationOpts{mutate: func(f *redisv1alpha1.RedisSentinelFormation) {
			f.Spec.Incus.HostRef = permissive
			change(&f.Spec.Incus)
		}}
	}
	cases := []struct {
		name      string
		opts      formationOpts
		condition string
		status    metav1.ConditionStatus
		reason    string
	}{
		{
			name: "password Secret missing", opts: formationOpts{skipSecrets: true},
			condition: redisv1alpha1.ConditionSecretsValid, status: metav1.ConditionFalse, reason: controllers.ReasonSecretNotFound,
		},
		{
			name:      "password key missing",
			opts:      formationOpts{mutate: func(f *redisv1alpha1.RedisSentinelFormation) { f.Spec.Auth.PasswordSecretRef.Key = "nope" }},
			condition: redisv1alpha1.ConditionSecretsValid, status: metav1.ConditionFalse, reason: controllers.ReasonSecretKeyMissing,
		},
		{
			name:      "placeholder password outside the lab",
			opts:      formationOpts{environment: redisv1alpha1.EnvironmentProduction, password: "lab-only-redis-password-change-me"},
			condition: redisv1alpha1.ConditionSecretsValid, status: metav1.ConditionFalse, reason: controllers.ReasonPasswordRefused,
		},
		{
			name:      "weak password, environment left to its default (production)",
			opts:      formationOpts{password: "Ab1Ab1Ab1Ab1"},
			condition: redisv1alpha1.ConditionSecretsValid, status: metav1.ConditionFalse, reason: controllers.ReasonPasswordRefused,
		},
		{
			name:      "weak sentinel password",
			opts:      formationOpts{sentinelPass: "aaaaaaaaaaaaaaaaaaaaaaab"},
			condition: redisv1alpha1.ConditionSecretsValid, status: metav1.ConditionFalse, reason: controllers.ReasonPasswordRefused,
		},
		{
			name:      "image alias missing",
			opts:      missing(func(s *redisv1alpha1.IncusSpec) { s.Image = "no-such-image" }),
			condition: redisv1alpha1.ConditionDegraded, status: metav1.ConditionTrue, reason: controllers.ReasonImageMissing,
		},
		{
			name:      "profile missing",
			opts:      missing(func(s *redisv1alpha1.IncusSpec) { s.Profiles = []string{"no-such-profile"} }),
			condition: redisv1alpha1.ConditionDegraded, status: metav1.ConditionTrue, reason: controllers.ReasonProfileMissing,
		},
		{
			name:      "network missing",
			opts:      missing(func(s *redisv1alpha1.IncusSpec) { s.Network = "nosuchbr0" }),
			condition: redisv1alpha1.ConditionDegraded, status: metav1.ConditionTrue, reason: controllers.ReasonNetworkMissing,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFormation(t, "bad", tc.opts)
			cur := waitCondition(t, f, time.Minute, tc.condition, tc.status, tc.reason)
			t.Logf("%s: %s", tc.reason, conditionMessage(cur, tc.condition))
			if cur.Status.Phase == redisv1alpha1.PhaseReady {
				t.Fatalf("phase Ready despite bad input")
			}
			// Nothing created, adopted or deleted.
			owned, err := incusSrv.ListInstances(context.Background(), "user.rsf.formation-uid", string(cur.UID))
			if err != nil || len(owned) != 0 {
				t.Fatalf("instances were created for bad input: %d (%v)", len(owned), err)
			}
		})
	}
}

func conditionMessage(f *redisv1alpha1.RedisSentinelFormation, typ string) string {
	for _, c := range f.Status.Conditions {
		if c.Type == typ {
			return c.Message
		}
	}
	return ""
}

// TestBackendRulesValidation: backend ACL rules that would let a backend
// take a formation over, and the operator's own user names, are refused by
// the API server with the field named; a narrowing is accepted.
// (Server-side dry runs: nothing is created. The schema suite,
// api/v1alpha1/schema_test.go, has every case; these are the ones a user
// meets first.)
func TestBackendRulesValidation(t *testing.T) {
	c := stack(t)
	cases := []struct {
		name  string
		user  redisv1alpha1.BackendUserSpec
		field string // "" when the API server must accept it
	}{
		{"+@admin", redisv1alpha1.BackendUserSpec{Rules: []string{"~*", "+@admin"}}, "spec.auth.backendUser.rules"},
		{"+config", redisv1alpha1.BackendUserSpec{Rules: []string{"~*", "+@read", "+config"}}, "spec.auth.backendUser.rules"},
		{"+@all alone", redisv1alpha1.BackendUserSpec{Rules: []string{"~*", "+@all"}}, "spec.auth.backendUser.rules"},
		{"the default user", redisv1alpha1.BackendUserSpec{Name: "default"}, "spec.auth.backendUser.name"},
		{"an operator user", redisv1alpha1.BackendUserSpec{Name: "rsf-admin"}, "spec.auth.backendUser.name"},
		{"a narrowing", redisv1alpha1.BackendUserSpec{Name: "app", Rules: []string{"~app:*", "&app:*", "+@read", "+@write", "+@scripting", "-@dangerous"}}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := &redisv1alpha1.RedisSentinelFormation{ObjectMeta: metav1.ObjectMeta{Name: "e2elp-rules", Namespace: "default"}}
			f.Spec.Auth.PasswordSecretRef = redisv1alpha1.SecretKeyReference{Name: "redis-pw", Key: "password"}
			f.Spec.Auth.SentinelPasswordSecretRef = redisv1alpha1.SecretKeyReference{Name: "sentinel-pw", Key: "password"}
			f.Spec.Auth.BackendUser = tc.user
			err := c.Create(context.Background(), f, client.DryRunAll)
			switch {
			case tc.field == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.field == "":
			case !apierrors.IsInvalid(err):
				t.Fatalf("want Invalid naming %s, got %v", tc.field, err)
			case !strings.Contains(err.Error(), tc.field):
				t.Fatalf("the error does not name %s: %v", tc.field, err)
			}
		})
	}
}
