package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/client"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/internal/incus"
)

// Reasons of the Degraded condition when the formation's IncusHost refuses
// it. Nothing is created while one of them lasts.
const (
	ReasonIncusHostNotFound      = "IncusHostNotFound"
	ReasonNoDefaultIncusHost     = "NoDefaultIncusHost"
	ReasonNamespaceNotAdmitted   = "NamespaceNotAdmitted"
	ReasonNotAllowedByHost       = "NotAllowedByHost"
	ReasonIncusHostSecretInvalid = "IncusHostSecretInvalid"
	ReasonIncusClientNotTrusted  = "IncusClientNotTrusted"
	// ReasonIncusServerCertMismatch: the remote presented a certificate
	// other than the one pinned in spec.remote.serverCertificate.
	ReasonIncusServerCertMismatch = "IncusServerCertificateMismatch"
	// ReasonIncusHostRemoteInvalid: the remote's URL, pinned certificate or
	// client certificate and key cannot be used as they are.
	ReasonIncusHostRemoteInvalid = "IncusHostRemoteInvalid"
)

// Keys of an IncusHost's client certificate Secret (the kubernetes.io/tls
// layout).
const (
	hostKeyClientCert = corev1.TLSCertKey
	hostKeyClientKey  = corev1.TLSPrivateKeyKey
)

// refusal is input the user (or the host's administrator) must change: the
// formation is blocked with reason and message, and nothing is created.
type refusal struct{ reason, message string }

func (e *refusal) Error() string { return e.message }

func refuse(reason, format string, args ...any) *refusal {
	return &refusal{reason, fmt.Sprintf(format, args...)}
}

// hostName is the IncusHost the formation lives on: the one it names, the
// one recorded when it was first reconciled, or the single default host.
func hostName(ctx context.Context, c client.Reader, f *redisv1alpha1.RedisSentinelFormation) (string, error) {
	switch {
	case f.Spec.Incus.HostRef != "":
		return f.Spec.Incus.HostRef, nil
	case f.Status.IncusHost != "":
		return f.Status.IncusHost, nil
	}
	var hosts redisv1alpha1.IncusHostList
	if err := c.List(ctx, &hosts); err != nil {
		return "", fmt.Errorf("listing IncusHosts: %w", err)
	}
	var defaults []string
	for _, h := range hosts.Items {
		if h.Spec.Default {
			defaults = append(defaults, h.Name)
		}
	}
	slices.Sort(defaults)
	switch len(defaults) {
	case 1:
		return defaults[0], nil
	case 0:
		return "", refuse(ReasonNoDefaultIncusHost, "spec.incus.hostRef is unset and no IncusHost is marked default; name a host or ask an administrator to mark one default")
	default:
		return "", refuse(ReasonNoDefaultIncusHost, "spec.incus.hostRef is unset and several IncusHosts are marked default (%s); name one", strings.Join(defaults, ", "))
	}
}

// formationHost reads the formation's IncusHost.
func formationHost(ctx context.Context, c client.Reader, f *redisv1alpha1.RedisSentinelFormation) (*redisv1alpha1.IncusHost, error) {
	name, err := hostName(ctx, c, f)
	if err != nil {
		return nil, err
	}
	host := &redisv1alpha1.IncusHost{}
	if err := c.Get(ctx, client.ObjectKey{Name: name}, host); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, refuse(ReasonIncusHostNotFound, "IncusHost %q (spec.incus.hostRef or status.incusHost) does not exist", name)
		}
		return nil, fmt.Errorf("reading IncusHost %s: %w", name, err)
	}
	return host, nil
}

// admits checks that the host lets the formation's namespace use it.
func admits(host *redisv1alpha1.IncusHost, ns *corev1.Namespace) *refusal {
	notAdmitted := refuse(ReasonNamespaceNotAdmitted, "IncusHost %q does not admit namespace %q (its spec.namespaceSelector does not select it); ask an administrator", host.Name, ns.Name)
	if host.Spec.NamespaceSelector == nil {
		return notAdmitted
	}
	selector, err := metav1.LabelSelectorAsSelector(host.Spec.NamespaceSelector)
	if err != nil {
		return refuse(ReasonNamespaceNotAdmitted, "IncusHost %q has an invalid spec.namespaceSelector: %v", host.Name, err)
	}
	if !selector.Matches(labels.Set(ns.Labels)) {
		return notAdmitted
	}
	return nil
}

// checkAllowed refuses the first Incus object the formation names that its
// host does not allow, naming the field; image is the one members are
// created from (formationImage).
func checkAllowed(host *redisv1alpha1.IncusHost, spec redisv1alpha1.IncusSpec, image string) *refusal {
	allowed := host.Spec.Allowed
	single := []struct {
		field, value string
		list         []string
	}{
		{"spec.incus.project", spec.Project, allowed.Projects},
		{"spec.incus.network", spec.Network, allowed.Networks},
		{"spec.incus.storagePool", spec.StoragePool, allowed.StoragePools},
		{"spec.incus.image", image, allowed.Images},
	}
	for _, c := range single {
		if !slices.Contains(c.list, c.value) {
			return notAllowed(host, c.field, c.value, c.list)
		}
	}
	for _, p := range spec.Profiles {
		if !slices.Contains(allowed.Profiles, p) {
			return notAllowed(host, "spec.incus.profiles", p, allowed.Profiles)
		}
	}
	for _, t := range spec.Targets {
		if !slices.Contains(allowed.Targets, t) {
			return notAllowed(host, "spec.incus.targets", t, allowed.Targets)
		}
	}
	if g := spec.Placement.Group; g != "" && !slices.Contains(allowed.ClusterGroups, g) {
		return notAllowed(host, "spec.incus.placement.group", g, allowed.ClusterGroups)
	}
	return nil
}

func notAllowed(host *redisv1alpha1.IncusHost, field, value string, allowed []string) *refusal {
	if len(allowed) == 0 {
		return refuse(ReasonNotAllowedByHost, "%s: %q is not allowed on IncusHost %q, which allows none", field, value, host.Name)
	}
	return refuse(ReasonNotAllowedByHost, "%s: %q is not allowed on IncusHost %q (allowed: %s)", field, value, host.Name, strings.Join(allowed, ", "))
}

// effectiveLimits are the formation's container limits with the host's
// defaults for the ones it leaves unset; a limit above the host's maximum,
// or none where the host sets a maximum, is refused.
func effectiveLimits(host *redisv1alpha1.IncusHost, limits redisv1alpha1.ContainerLimits) (redisv1alpha1.ContainerLimits, *refusal) {
	if limits.CPU == "" {
		limits.CPU = host.Spec.DefaultLimits.CPU
	}
	if limits.Memory == "" {
		limits.Memory = host.Spec.DefaultLimits.Memory
	}
	checks := []struct {
		field, value, max string
		parse             func(string) (uint64, error)
	}{
		{"spec.incus.limits.cpu", limits.CPU, host.Spec.MaxLimits.CPU, func(s string) (uint64, error) { return strconv.ParseUint(s, 10, 64) }},
		{"spec.incus.limits.memory", limits.Memory, host.Spec.MaxLimits.Memory, memoryBytes},
	}
	for _, c := range checks {
		if c.max == "" {
			continue
		}
		if c.value == "" {
			return limits, refuse(ReasonNotAllowedByHost, "%s is required on IncusHost %q, which caps it at %s", c.field, host.Name, c.max)
		}
		value, verr := c.parse(c.value)
		limit, lerr := c.parse(c.max)
		if err := errors.Join(verr, lerr); err != nil {
			return limits, refuse(ReasonNotAllowedByHost, "%s: cannot compare %q with IncusHost %q's maximum %q: %v", c.field, c.value, host.Name, c.max, err)
		}
		if value > limit {
			return limits, refuse(ReasonNotAllowedByHost, "%s: %s is above IncusHost %q's maximum %s", c.field, c.value, host.Name, c.max)
		}
	}
	return limits, nil
}

// memoryUnits are Incus's limits.memory suffixes, longest first.
var memoryUnits = []struct {
	suffix string
	factor uint64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"kB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1},
}

// memoryBytes reads an Incus memory size such as "512MiB" (the schema's
// pattern guarantees one of memoryUnits; sizes up to 15 digits fit).
func memoryBytes(s string) (uint64, error) {
	for _, u := range memoryUnits {
		if digits, ok := strings.CutSuffix(s, u.suffix); ok {
			n, err := strconv.ParseUint(digits, 10, 64)
			if err != nil {
				return 0, fmt.Errorf("memory size %q: %w", s, err)
			}
			return n * u.factor, nil
		}
	}
	return 0, fmt.Errorf("memory size %q has no unit (B, kB, MB, GB, TB, KiB, MiB, GiB, TiB)", s)
}

// hostOptions are the connection options of host in project: its socket,
// or its remote with the client certificate from the Secret in the
// operator's namespace and the exactly pinned server certificate.
func hostOptions(ctx context.Context, c client.Reader, operatorNamespace string, host *redisv1alpha1.IncusHost, project string) (incus.Options, error) {
	opts := incus.Options{Project: project, SocketPath: host.Spec.Socket}
	remote := host.Spec.Remote
	if remote == nil {
		return opts, nil
	}
	secret := &corev1.Secret{}
	key := client.ObjectKey{Namespace: operatorNamespace, Name: remote.ClientCertificateSecretName}
	if err := c.Get(ctx, key, secret); err != nil {
		if apierrors.IsNotFound(err) {
			return opts, refuse(ReasonIncusHostSecretInvalid, "IncusHost %q: Secret %s named by spec.remote.clientCertificateSecretName does not exist", host.Name, key)
		}
		return opts, fmt.Errorf("reading IncusHost %q's client certificate Secret %s: %w", host.Name, key, err)
	}
	for _, k := range []string{hostKeyClientCert, hostKeyClientKey} {
		if len(secret.Data[k]) == 0 {
			return opts, refuse(ReasonIncusHostSecretInvalid, "IncusHost %q: Secret %s (spec.remote.clientCertificateSecretName) has no key %q", host.Name, key, k)
		}
	}
	opts.Remote = &incus.Remote{
		URL:          remote.URL,
		FallbackURLs: remote.FallbackURLs,
		ClientCert:   secret.Data[hostKeyClientCert],
		ClientKey:    secret.Data[hostKeyClientKey],
		ServerCert:   []byte(remote.ServerCertificate),
	}
	return opts, nil
}

// connectionReason names why a connection to Incus failed, for conditions:
// a certificate problem needs an administrator, anything else is retried.
func connectionReason(err error) string {
	switch {
	case errors.Is(err, incus.ErrNotTrusted):
		return ReasonIncusClientNotTrusted
	case errors.Is(err, incus.ErrServerCertMismatch):
		return ReasonIncusServerCertMismatch
	case errors.Is(err, incus.ErrInvalidRemote):
		return ReasonIncusHostRemoteInvalid
	}
	return ReasonIncusUnreachable
}
