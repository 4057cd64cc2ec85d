package controllers

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/internal/incus"
)

// Reasons of the Degraded condition for Incus problems.
const (
	ReasonIncusUnreachable   = "IncusUnreachable"
	ReasonIncusRemoteSecret  = "IncusRemoteSecretInvalid"
	ReasonImageMissing       = "ImageMissing"
	ReasonProfileMissing     = "ProfileMissing"
	ReasonNetworkMissing     = "NetworkMissing"
	ReasonStoragePoolMissing = "StoragePoolMissing"
	ReasonInstanceNotOwned   = "InstanceNotOwned"
	ReasonInstanceError      = "InstanceError"
)

// Keys of the Secret named by spec.incus.remote.secretName.
const (
	remoteKeyURL        = "url"
	remoteKeyClientCert = "client.crt"
	remoteKeyClientKey  = "client.key"
	remoteKeyServerCert = "server.crt"
)

// memberName is the member's and its instance's name.
func memberName(f *redisv1alpha1.RedisSentinelFormation, index int) string {
	return f.Name + "-" + strconv.Itoa(index)
}

// connectIncus returns the formation's Incus server: the local socket, or the
// remote its Secret describes.
func (r *FormationReconciler) connectIncus(ctx context.Context, f *redisv1alpha1.RedisSentinelFormation) (incus.Server, incus.Options, error) {
	opts := incus.Options{Project: f.Spec.Incus.Project}
	if remote := f.Spec.Incus.Remote; remote != nil {
		var secret corev1.Secret
		if err := r.Get(ctx, types.NamespacedName{Namespace: f.Namespace, Name: remote.SecretName}, &secret); err != nil {
			if apierrors.IsNotFound(err) {
				return nil, opts, &secretError{ReasonIncusRemoteSecret, fmt.Sprintf("Secret %s/%s named by spec.incus.remote.secretName does not exist", f.Namespace, remote.SecretName)}
			}
			return nil, opts, err
		}
		for _, key := range []string{remoteKeyURL, remoteKeyClientCert, remoteKeyClientKey, remoteKeyServerCert} {
			if len(secret.Data[key]) == 0 {
				return nil, opts, &secretError{ReasonIncusRemoteSecret, fmt.Sprintf("Secret %s/%s (spec.incus.remote.secretName) has no key %q", f.Namespace, remote.SecretName, key)}
			}
		}
		opts.Remote = &incus.Remote{
			URL:        string(secret.Data[remoteKeyURL]),
			ClientCert: secret.Data[remoteKeyClientCert],
			ClientKey:  secret.Data[remoteKeyClientKey],
			ServerCert: secret.Data[remoteKeyServerCert],
		}
	}
	srv, err := r.Incus.Server(ctx, opts)
	return srv, opts, err
}

// reconcileInstances makes sure every member's container exists, runs, is
// the formation's own and keeps its address.
func (r *FormationReconciler) reconcileInstances(ctx context.Context, s *formationState) error {
	f := s.f
	srv, opts, err := r.connectIncus(ctx, f)
	var se *secretError
	switch {
	case errors.As(err, &se):
		s.degrade(se.reason, "%s", se.message)
		return errBlocked
	case err != nil:
		s.degrade(ReasonIncusUnreachable, "cannot connect to Incus: %v", err)
		return err
	}
	s.incus = srv

	if err := r.readInstances(ctx, s); err != nil {
		if !errors.Is(err, errBlocked) {
			r.Incus.Forget(opts) // reconnect next time: incusd may have restarted
		}
		return err
	}
	// Check what a create needs before one is due, and before a rollout
	// deletes a container it could then not rebuild.
	if s.anyInstanceMissing() || len(s.outdated()) > 0 {
		if err := r.checkPrerequisites(ctx, s); err != nil {
			return err
		}
	}
	// From here on the formation owns instances: deleting it must remove
	// them first. A formation that never got this far deletes at once.
	if err := r.ensureFinalizer(ctx, f); err != nil {
		return err
	}
	if err := r.rolloutStep(ctx, s); err != nil {
		return err
	}
	if err := r.createMissing(ctx, s); err != nil {
		return err
	}
	for _, m := range s.members {
		if err := r.ensureInstance(ctx, s, m); err != nil {
			return err
		}
	}
	return nil
}

// readInstances reads the formation's instances with one call, then looks
// up the names it lacks: an instance there that the formation does not own
// blocks the formation before anything is created. Owned instances beyond
// spec.members are kept aside as leaving (a scale-down).
func (r *FormationReconciler) readInstances(ctx context.Context, s *formationState) error {
	f := s.f
	owned, err := s.incus.ListInstances(ctx, keyFormationUID, string(f.UID))
	if err != nil {
		s.degrade(ReasonIncusUnreachable, "listing the formation's instances: %v", err)
		return err
	}
	byName := map[string]*incus.Instance{}
	for i := range owned {
		byName[owned[i].Name] = &owned[i]
		if index, err := strconv.Atoi(owned[i].Config[keyMember]); err == nil && index > int(f.Spec.Members) {
			s.leaving = append(s.leaving, &memberState{index: index, name: owned[i].Name, instance: &owned[i]})
		}
	}
	s.members = make([]*memberState, 0, f.Spec.Members)
	for i := 1; i <= int(f.Spec.Members); i++ {
		m := &memberState{index: i, name: memberName(f, i), instance: byName[memberName(f, i)]}
		if m.instance == nil {
			inst, err := s.incus.GetInstance(ctx, m.name)
			switch {
			case errors.Is(err, incus.ErrNotFound):
			case err != nil:
				s.degrade(ReasonIncusUnreachable, "reading instance %s: %v", m.name, err)
				return err
			case inst.Config[keyFormationUID] == string(f.UID):
				// Ours, though the list missed it (seen with a container
				// still booting).
				m.instance = inst
			default:
				s.degrade(ReasonInstanceNotOwned, "an Incus instance named %s exists but does not belong to this formation (%s=%q); it is left untouched: rename the formation or remove that instance",
					m.name, keyFormationUID, inst.Config[keyFormationUID])
				return errBlocked
			}
		}
		s.members = append(s.members, m)
	}
	return nil
}

func (s *formationState) anyInstanceMissing() bool {
	for _, m := range s.members {
		if m.instance == nil {
			return true
		}
	}
	return false
}

// prerequisite is an Incus object a create needs.
type prerequisite struct {
	reason, kind, name, field string
	exists                    func(context.Context, string) (bool, error)
}

// checkPrerequisites names the missing image, profile, network or pool
// before a create would fail on it.
func (r *FormationReconciler) checkPrerequisites(ctx context.Context, s *formationState) error {
	spec := s.f.Spec.Incus
	checks := []prerequisite{
		{ReasonImageMissing, "image alias", spec.Image, "spec.incus.image", s.incus.ImageAliasExists},
		{ReasonNetworkMissing, "network", spec.Network, "spec.incus.network", s.incus.NetworkExists},
		{ReasonStoragePoolMissing, "storage pool", spec.StoragePool, "spec.incus.storagePool", s.incus.StoragePoolExists},
	}
	for _, p := range spec.Profiles {
		checks = append(checks, prerequisite{ReasonProfileMissing, "profile", p, "spec.incus.profiles", s.incus.ProfileExists})
	}
	for _, c := range checks {
		if c.name == "" {
			continue
		}
		ok, err := c.exists(ctx, c.name)
		if err != nil {
			s.degrade(ReasonIncusUnreachable, "checking %s %q: %v", c.kind, c.name, err)
			return err
		}
		if !ok {
			s.degrade(c.reason, "Incus has no %s %q (%s); nothing is created until it exists", c.kind, c.name, c.field)
			return fmt.Errorf("incus %s %q (%s) does not exist", c.kind, c.name, c.field)
		}
	}
	return nil
}

// createMissing creates every missing member's container at once: Incus
// unpacks each from the image independently, so a formation comes up in
// the time of one create rather than N.
func (r *FormationReconciler) createMissing(ctx context.Context, s *formationState) error {
	f := s.f
	var missing []*memberState
	for _, m := range s.members {
		if m.instance == nil {
			missing = append(missing, m)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	s.progressing = "creating instances"
	errs := make([]error, len(missing))
	var wg sync.WaitGroup
	for i, m := range missing {
		spec := r.instanceSpec(f, m.index, previousAddress(f, m.name))
		s.log.Info("creating member instance", "instance", m.name, "pinnedAddress", spec.Devices["eth0"]["ipv4.address"])
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.incus.CreateInstance(ctx, spec)
		}()
	}
	wg.Wait()
	var firstErr error
	for i, m := range missing {
		switch err := errs[i]; {
		case errors.Is(err, incus.ErrOperationPending), errors.Is(err, incus.ErrAlreadyExists):
			// re-read on the next pass, never re-sent
		case err != nil:
			s.degrade(ReasonInstanceError, "creating instance %s: %v", m.name, err)
			r.event(f, corev1.EventTypeWarning, "CreateFailed", "CreateInstance", m.name, "creating instance %s failed; retrying: %v", m.name, err)
			firstErr = cmp.Or(firstErr, err)
		default:
			r.event(f, corev1.EventTypeNormal, "InstanceCreated", "CreateInstance", m.name, "created and started Incus instance %s", m.name)
			inst, err := s.incus.GetInstance(ctx, m.name)
			if err != nil {
				return err
			}
			m.instance = inst
		}
	}
	return firstErr
}

// ensureInstance starts a stopped container and pins a running one's
// address so it survives restarts and rebuilds.
func (r *FormationReconciler) ensureInstance(ctx context.Context, s *formationState, m *memberState) error {
	switch {
	case m.instance == nil:
		return nil // its create is pending
	case m.instance.Status == "Stopped":
		return r.startStopped(ctx, s, m)
	}
	if m.instance.Status == "Running" && m.instance.IPv4 != "" && m.instance.Devices["eth0"]["ipv4.address"] != m.instance.IPv4 {
		if err := s.incus.UpdateInstanceDevice(ctx, m.name, "eth0", map[string]string{"ipv4.address": m.instance.IPv4}); err != nil {
			s.degrade(ReasonInstanceError, "pinning the address of %s: %v", m.name, err)
			return err
		}
		s.log.Info("pinned member address", "instance", m.name, "address", m.instance.IPv4)
	}
	return nil
}

// instanceSpec is a member's container: the formation's image and profiles,
// ownership keys, root disk on the pool and eth0 on the network with the
// member's previous address pinned when it had one.
func (r *FormationReconciler) instanceSpec(f *redisv1alpha1.RedisSentinelFormation, index int, address string) incus.InstanceSpec {
	spec := f.Spec.Incus
	config := map[string]string{
		keyFormationUID: string(f.UID),
		keyFormation:    f.Namespace + "/" + f.Name,
		keyMember:       strconv.Itoa(index),
		keyTemplate:     templateDigest(f, index),
	}
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
		devices["eth0"] = map[string]string{"type": "nic", "name": "eth0", "network": spec.Network}
		if address != "" {
			devices["eth0"]["ipv4.address"] = address
		}
	}
	var target string
	if index <= len(spec.Targets) {
		target = spec.Targets[index-1]
	}
	return incus.InstanceSpec{
		Name:     memberName(f, index),
		Image:    spec.Image,
		Profiles: spec.Profiles,
		Config:   config,
		Devices:  devices,
		Target:   target,
	}
}

// previousAddress is the address status recorded for a member, so that a
// rebuilt member comes back where sentinels and clients know it.
func previousAddress(f *redisv1alpha1.RedisSentinelFormation, name string) string {
	for _, m := range f.Status.Members {
		if m.Name == name {
			return m.Address
		}
	}
	return ""
}

// crashWindow: a container that stops again within this time after the
// operator started it is crashing, not stopped by someone.
const crashWindow = time.Minute

// startStopped starts a stopped member's container. One that stops again
// right after being started is reported (Degraded, with where to look) and
// started again only once the crash window has passed.
func (r *FormationReconciler) startStopped(ctx context.Context, s *formationState, m *memberState) error {
	key := client.ObjectKeyFromObject(s.f)
	var last time.Time
	r.remember(key, func(mem *memory) { last = mem.started[m.name] })
	if since := r.now().Sub(last); since < crashWindow {
		s.degrade(ReasonInstanceError, "instance %s stopped again %s after it was started (a failing init, see `incus console %s --show-log`, or stopped by hand); next start in %s",
			m.name, since.Round(time.Second), m.name, (crashWindow - since).Round(time.Second))
		return nil
	}
	s.log.Info("starting stopped member instance", "instance", m.name)
	if err := s.incus.StartInstance(ctx, m.name); err != nil && !errors.Is(err, incus.ErrOperationPending) {
		s.degrade(ReasonInstanceError, "starting instance %s: %v", m.name, err)
		return err
	}
	r.remember(key, func(mem *memory) { mem.started[m.name] = r.now() })
	r.event(s.f, corev1.EventTypeNormal, "InstanceStarted", "StartInstance", m.name, "started stopped Incus instance %s", m.name)
	s.progressing = "starting instances"
	return nil
}
