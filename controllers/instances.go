package controllers

import (
	"context"
	"fmt"
	"maps"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/internal/engine"
	"github.com/incusops/redis-sentinel-operator/internal/fingerprint"
	"github.com/incusops/redis-sentinel-operator/internal/incus"
)

// Reasons of the Degraded condition for Incus problems.
const (
	ReasonIncusUnreachable = "IncusUnreachable"
	ReasonImageMissing     = "ImageMissing"
	// ReasonImageEngineMismatch: the image runs another engine than
	// spec.engine (its user.rsf.engine property).
	ReasonImageEngineMismatch = "ImageEngineMismatch"
	ReasonProfileMissing      = "ProfileMissing"
	ReasonNetworkMissing      = "NetworkMissing"
	ReasonStoragePoolMissing  = "StoragePoolMissing"
	ReasonInstanceNotOwned    = "InstanceNotOwned"
	ReasonInstanceError       = "InstanceError"
)

// memberName is the member's name: in status, Events, Sentinel targets and
// metrics. Its Incus instance has its own name (InstanceName).
func memberName(f *redisv1alpha1.RedisSentinelFormation, index int) string {
	return f.Name + "-" + strconv.Itoa(index)
}

// maxInstanceName is Incus's limit (an instance name is a hostname).
const maxInstanceName = 63

// InstanceName is the name the operator creates member index of the
// formation namespace/name under, e.g. "cache-apps-b4cc7e0f-1" for apps/cache.
//
// Formations of the same name in two namespaces share one Incus (project),
// so the name carries the namespace; and since both names may contain
// hyphens ("a-b"/"c" and "a"/"b-c" read alike), it also carries a hash of
// namespace/name, which keeps it unique whatever the lengths: the readable
// part "<name>-<namespace>" is cut to fit Incus's 63 characters, the hash
// and the index never are. It starts with the formation name, which the
// schema makes start with a letter (a namespace may start with a digit).
// Should two formations still meet on one name, the second is blocked with
// InstanceNotOwned; no instance is ever adopted by name.
//
// Instances are found by their ownership keys, not by this name, so the
// "<name>-<n>" instances of formations created before it keep serving.
func InstanceName(namespace, name string, index int) string {
	return instanceName(namespace, name, index, "")
}

// instanceName is InstanceName with a variant appended ("" for none): the
// name of a member's container that replaces one it had to leave behind.
func instanceName(namespace, name string, index int, variant string) string {
	suffix := "-" + fingerprint.Strings(namespace, name)[:8] + "-" + strconv.Itoa(index)
	if variant != "" {
		suffix += "-" + variant
	}
	readable := name + "-" + namespace
	if room := maxInstanceName - len(suffix); len(readable) > room {
		readable = strings.TrimRight(readable[:room], "-")
	}
	return readable + suffix
}

// connectIncus connects to the formation's IncusHost in its project. With
// admit, the host must admit the formation's namespace and allow its Incus
// spec (a *refusal otherwise), and the host's default limits are applied to
// the pass's copy of the spec; without, as for a deletion, only the
// connection is made.
func (r *FormationReconciler) connectIncus(ctx context.Context, f *redisv1alpha1.RedisSentinelFormation, admit bool) (incus.Server, incus.Options, *redisv1alpha1.IncusHost, error) {
	host, err := formationHost(ctx, r.Client, f)
	if err != nil {
		return nil, incus.Options{}, nil, err
	}
	if admit {
		ns := &corev1.Namespace{}
		if err := r.Get(ctx, client.ObjectKey{Name: f.Namespace}, ns); err != nil {
			return nil, incus.Options{}, host, fmt.Errorf("reading namespace %s: %w", f.Namespace, err)
		}
		limits, rf := effectiveLimits(host, f.Spec.Incus.Limits)
		if rf == nil {
			rf = admits(host, ns)
		}
		if rf == nil {
			rf = checkAllowed(host, f.Spec.Incus, formationImage(f))
		}
		if rf != nil {
			return nil, incus.Options{}, host, rf
		}
		f.Spec.Incus.Limits = limits
	}
	opts, err := hostOptions(ctx, r.APIReader, r.Options.OperatorNamespace, host, f.Spec.Incus.Project)
	if err != nil {
		return nil, opts, host, err
	}
	srv, err := r.Incus.Server(ctx, opts)
	return srv, opts, host, err
}

// placementTarget is the cluster member a member is placed on ("" lets
// Incus choose).
func placementTarget(f *redisv1alpha1.RedisSentinelFormation, index int) string {
	if index <= len(f.Spec.Incus.Targets) {
		return f.Spec.Incus.Targets[index-1]
	}
	return ""
}

// templateDigest fingerprints the spec fields a member's container is built
// from; a container with another digest is replaced, one member at a time.
// The engine counts only when it is not Redis, so that containers built
// before engines existed keep their digest.
func templateDigest(f *redisv1alpha1.RedisSentinelFormation, index int) string {
	spec := f.Spec.Incus
	fields := []string{formationImage(f), strings.Join(spec.Profiles, ","), spec.Network, spec.StoragePool, spec.Project,
		placementTarget(f, index), spec.Limits.CPU, spec.Limits.Memory}
	if e := formationEngine(f).Name; e != engine.Redis {
		fields = append(fields, string(e))
	}
	return fingerprint.Strings(fields...)[:16]
}

// outdated lists members whose container was built from other spec fields
// or whose servers listen on other ports than the spec's (see ports.go).
func outdated(f *redisv1alpha1.RedisSentinelFormation, members []*memberObs) []*memberObs {
	var out []*memberObs
	for _, m := range members {
		if m.instance != nil && !m.unreadable() && (m.instance.Config[keyTemplate] != templateDigest(f, m.index) || memberPorts(f, m) != specPorts(f)) {
			out = append(out, m)
		}
	}
	return out
}

func anyMissing(members []*memberObs) bool {
	for _, m := range members {
		if m.instance == nil {
			return true
		}
	}
	return false
}

// instanceSpec is a member's container: the formation's image and profiles,
// ownership keys, root disk on the pool and eth0 on the network with the
// member's previous address pinned when it had one.
func instanceSpec(f *redisv1alpha1.RedisSentinelFormation, index int, address string) incus.InstanceSpec {
	spec := f.Spec.Incus
	config := map[string]string{
		keyFormationUID: string(f.UID),
		keyFormation:    f.Namespace + "/" + f.Name,
		keyMember:       strconv.Itoa(index),
		keyTemplate:     templateDigest(f, index),
		engine.Property: string(formationEngine(f).Name),
	}
	maps.Copy(config, portKeys(specPorts(f)))
	if spec.Limits.CPU != "" {
		config["limits.cpu"] = spec.Limits.CPU
	}
	if spec.Limits.Memory != "" {
		config["limits.memory"] = spec.Limits.Memory
	}
	devices := map[string]map[string]string{}
	if spec.StoragePool != "" {
		devices["root"] = map[string]string{"type": "disk", "path": "/", "pool": spec.StoragePool}
	}
	if spec.Network != "" {
		devices["eth0"] = map[string]string{"type": "nic", "name": "eth0", "network": spec.Network, "hwaddr": memberMAC(f, index, address)}
		if address != "" {
			devices["eth0"]["ipv4.address"] = address
		}
	}
	return incus.InstanceSpec{
		Name:     InstanceName(f.Namespace, f.Name, index),
		Image:    formationImage(f),
		Profiles: spec.Profiles,
		Config:   config,
		Devices:  devices,
		Target:   placementTarget(f, index),
	}
}

// memberMAC is the MAC address of member index's eth0 at address: derived
// from the network and the address it is pinned to, so that whatever
// container holds an address on the network has the MAC the address had
// (a rebuilt member, or a new formation's member at an address a deleted
// one used). With a new MAC, the host and the peers that talked to the
// old container keep sending to the old MAC until their neighbour entry
// fails over (Linux ignores the new container's ARP within a second of
// the entry's last update): members were measured unreachable 20 s after
// their start, and a rebuilt one 30-50 s. Without an address yet (DHCP) it
// is derived from the formation and the index. Locally administered,
// unicast.
func memberMAC(f *redisv1alpha1.RedisSentinelFormation, index int, address string) string {
	h := fingerprint.Strings(string(f.UID), "mac", strconv.Itoa(index))
	if address != "" {
		h = fingerprint.Strings(f.Spec.Incus.Network, "mac", address)
	}
	return "0a:" + h[0:2] + ":" + h[2:4] + ":" + h[4:6] + ":" + h[6:8] + ":" + h[8:10]
}

// previousAddress is the address status recorded for a member, so that a
// rebuilt member comes back where sentinels and clients know it.
func previousAddress(f *redisv1alpha1.RedisSentinelFormation, name string) string {
	if m := findMember(f.Status.Members, name); m != nil {
		return m.Address
	}
	return ""
}
