package controllers

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/internal/acl"
	"github.com/incusops/redis-sentinel-operator/internal/endpoint"
	"github.com/incusops/redis-sentinel-operator/internal/engine"
	"github.com/incusops/redis-sentinel-operator/internal/incus"
	"github.com/incusops/redis-sentinel-operator/internal/redisadmin"
	"github.com/incusops/redis-sentinel-operator/internal/render"
	"github.com/incusops/redis-sentinel-operator/internal/sentinel"
	"github.com/incusops/redis-sentinel-operator/internal/topology"
)

// observation is everything one pass knows about a formation besides its
// spec and status. observe fills it; decide and setStatus only read it.
type observation struct {
	// stop, when set, ends the pass before anything is decided: the
	// formation is blocked (errBlocked) or something it needs could not be
	// read (retried with backoff). stopPhase names where.
	stop      error
	stopPhase string
	// problems are the reasons the formation is degraded found while
	// observing (Incus unreachable, a prerequisite missing, ...).
	problems []problem
	// secretProblem is why the password Secrets are refused.
	secretProblem *secretError

	// desired are the passwords the Secrets ask for: the backend ones from
	// the user's Secrets, the internal ones from the formation's own
	// (generated where it lacks them: internalComplete is false then).
	desired          map[acl.Credential]string
	internalSecret   *corev1.Secret
	internalComplete bool
	// state is the formation's own record of the passwords the members
	// were given, and of their predecessors during a rotation.
	state credentialState
	// creds are what the members accept now: the state's, or the desired
	// ones before the state was first recorded.
	creds acl.Set

	// host is the IncusHost the formation lives on, once it admitted it.
	host string

	// incus and admin are the handles act uses; decide never calls them.
	incus incus.Server
	admin redisadmin.Admin
	// incusOptions are the options incus was connected with, set once the
	// instances were read.
	incusOptions *incus.Options

	members []*memberObs
	// leaving are owned instances beyond spec.members (a scale-down).
	leaving []*memberObs
	// missingPrerequisite names an image, profile, network or pool that a
	// create or rebuild would need and that Incus lacks.
	missingPrerequisite *problem
	// addressing is the network's IPv4 plan while members are to be
	// created or pinned (nil otherwise, or when Incus hands out no
	// addresses there).
	addressing *addressing
	// unpinnable: the network is not an Incus bridge (e.g. a macvlan on an
	// Incus cluster), so members keep their DHCP lease by their MAC and
	// nothing is pinned.
	unpinnable bool
	// cluster is the Incus cluster of the host (nil: a standalone server).
	cluster *clusterObs
	// abandoned are instances members left on lost hosts
	// (status.members[].abandonedInstance), still known to Incus.
	abandoned []abandonedObs

	// tls is the formation's TLS material (nil: TLS is off).
	tls *tlsObs

	// connection is the connection Secret as it is (nil: absent).
	connection *corev1.Secret

	// events and switches are what the Sentinel watcher heard.
	events   []sentinel.Event
	switches []sentinel.Switch
	// instanceStops are when Incus reported a member's (or leaving
	// member's) instance stopped, shut down or deleted, by instance name:
	// only instances stopped since and not started again.
	instanceStops map[string]time.Time
}

// abandonedObs is an instance a member left on a lost host.
type abandonedObs struct {
	member   string
	instance incus.Instance
}

// memberObs is one member: its instance and what its servers said.
type memberObs struct {
	index int
	// name is the member's name (memberName), instanceName its Incus
	// instance's: the observed one's, else the one a create takes. Every
	// Incus call for the member uses instanceName.
	name         string
	instanceName string
	instance     *incus.Instance
	topology.Member
	// quorumErr is the sentinel's CKQUORUM answer.
	quorumErr error
	// replicaPriorities are the replica-priorities the sentinel reports
	// (SENTINEL REPLICAS), by replica; read only while a switchover waits
	// for them (nil otherwise, or when the sentinel did not answer).
	replicaPriorities map[endpoint.Endpoint]int
}

// member is the member called name, also one that is leaving.
func (o *observation) member(name string) *memberObs {
	for _, list := range [][]*memberObs{o.members, o.leaving} {
		for _, m := range list {
			if m.name == name {
				return m
			}
		}
	}
	return nil
}

func (o *observation) degrade(reason, format string, args ...any) {
	o.problems = append(o.problems, problem{reason: reason, message: fmt.Sprintf(format, args...)})
}

// observe reads, in order: the password Secrets and the formation's
// password state, Incus (instances, and prerequisites when a create or
// rebuild may be due), the TLS material, every running member's
// redis-server and sentinel in parallel (dialed with it), the connection
// Secret and the Sentinel watcher's events.
func (r *FormationReconciler) observe(ctx context.Context, f *redisv1alpha1.RedisSentinelFormation, log logr.Logger) *observation {
	o := &observation{}
	if !r.observeSecrets(ctx, f, o) {
		return o
	}
	if !r.observeInstances(ctx, f, o) {
		return o
	}
	if err := r.observeTLS(ctx, f, o, r.now()); err != nil {
		o.stop, o.stopPhase = err, "secrets"
		return o
	}
	key := client.ObjectKeyFromObject(f)
	o.admin = r.Redis.Admin(key.String(), adminCredentials(o.creds, o.tls))
	r.observeServers(ctx, f, o, log)
	o.events, o.switches = r.Watcher.Events(key), r.Watcher.Switches(key)
	secret := &corev1.Secret{}
	switch err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: f.Namespace, Name: connectionSecretName(f)}, secret); {
	case err == nil:
		o.connection = secret
	case !apierrors.IsNotFound(err):
		o.stop, o.stopPhase = fmt.Errorf("reading the connection Secret: %w", err), "secrets"
	}
	return o
}

func (r *FormationReconciler) observeSecrets(ctx context.Context, f *redisv1alpha1.RedisSentinelFormation, o *observation) bool {
	password, sentinelPassword, err := r.readPasswords(ctx, f)
	if err == nil {
		o.internalSecret, o.desired, o.internalComplete, err = r.readInternalCredentials(ctx, f)
	}
	if err == nil {
		o.state, err = r.readPasswordState(ctx, f)
	}
	if err != nil {
		if se, ok := asSecretError(err); ok {
			o.secretProblem = se
			err = errBlocked
		}
		o.stop, o.stopPhase = err, "secrets"
		return false
	}
	o.desired[acl.BackendPassword], o.desired[acl.BackendSentinelPassword] = password, sentinelPassword
	o.creds = o.state.set
	if !o.state.found() {
		o.creds = acl.Set{}
		for c, pw := range o.desired {
			o.creds[c] = acl.Passwords{Current: pw}
		}
	}
	return true
}

func (r *FormationReconciler) observeInstances(ctx context.Context, f *redisv1alpha1.RedisSentinelFormation, o *observation) bool {
	srv, opts, host, err := r.connectIncus(ctx, f, true)
	var rf *refusal
	switch {
	case errors.As(err, &rf):
		o.degrade(rf.reason, "%s; nothing is created or changed until it is fixed", rf.message)
		o.stop, o.stopPhase = errBlocked, "instances"
		return false
	case err != nil:
		reason := connectionReason(err)
		o.degrade(reason, "cannot connect to Incus: %v", err)
		o.stop, o.stopPhase = err, "instances"
		if reason != ReasonIncusUnreachable {
			// A certificate or remote an administrator must fix: retrying
			// in a tight loop would only repeat the handshake.
			o.stop = errBlocked
		}
		return false
	}
	o.incus, o.host = srv, host.Name
	if o.cluster, err = observeCluster(ctx, o.incus); err != nil {
		r.Incus.Forget(opts) // reconnect next time: the member it reached may be down
		o.degrade(ReasonIncusUnreachable, "reading the Incus cluster's members: %v", err)
		o.stop, o.stopPhase = err, "instances"
		return false
	}
	if err := readInstances(ctx, f, o); err != nil {
		if !errors.Is(err, errBlocked) {
			r.Incus.Forget(opts) // reconnect next time: incusd may have restarted
		}
		o.stop, o.stopPhase = err, "instances"
		return false
	}
	o.incusOptions = &opts
	o.instanceStops = r.instanceStops(client.ObjectKeyFromObject(f), o)
	if anyMissing(o.members) || len(outdated(f, o.members)) > 0 || len(misplaced(f, o, topology.Plan{})) > 0 {
		if err := checkPrerequisites(ctx, f, o); err != nil {
			o.degrade(ReasonIncusUnreachable, "%v", err)
			o.stop, o.stopPhase = err, "instances"
			return false
		}
	}
	if o.missingPrerequisite == nil {
		if err := r.observeAddressing(ctx, f, o); err != nil {
			o.degrade(ReasonIncusUnreachable, "reading the addresses of network %s: %v", f.Spec.Incus.Network, err)
			o.stop, o.stopPhase = err, "instances"
			return false
		}
	}
	return true
}

// readInstances reads the formation's instances with one call and matches
// them to members by their ownership keys (formation UID and member index),
// not by name: an instance keeps serving under the name it was created with
// (formations from before InstanceName keep their "<name>-<n>" ones). For a
// member the list lacks it looks up, by name, the instance status recorded
// for it and the name a create would take: an instance there that the
// formation does not own blocks the formation before anything is created.
func readInstances(ctx context.Context, f *redisv1alpha1.RedisSentinelFormation, o *observation) error {
	owned, err := o.incus.ListInstances(ctx, keyFormationUID, string(f.UID))
	if err != nil {
		o.degrade(ReasonIncusUnreachable, "listing the formation's instances: %v", err)
		return err
	}
	if o.cluster.anyOffline() {
		unreadable, err := o.incus.UnreadableInstances(ctx)
		if err != nil {
			o.degrade(ReasonIncusUnreachable, "listing the instances on offline cluster members: %v", err)
			return err
		}
		owned = append(owned, unreadable...)
	}
	byIndex := map[int]*incus.Instance{}
	for i := range owned {
		index, err := strconv.Atoi(owned[i].Config[keyMember])
		if owned[i].Config == nil {
			// On an offline cluster member: known by the name status
			// recorded, if at all.
			index, err = recordedIndex(f, owned[i].Name)
		}
		if err != nil || index < 1 {
			continue
		}
		if st := findMember(f.Status.Members, memberName(f, index)); st != nil && st.AbandonedInstance == owned[i].Name {
			o.abandoned = append(o.abandoned, abandonedObs{member: st.Name, instance: owned[i]})
			continue
		}
		// Two instances of one member (never made by the operator): the one
		// status records, else the first by name, is the member.
		if prev := byIndex[index]; prev == nil || owned[i].Name == recordedInstance(f, index) {
			byIndex[index] = &owned[i]
		}
	}
	for index, inst := range byIndex {
		if index > int(f.Spec.Members) {
			o.leaving = append(o.leaving, newMemberObs(f, index, inst))
		}
	}
	slices.SortFunc(o.leaving, func(a, b *memberObs) int { return a.index - b.index })
	o.members = make([]*memberObs, 0, f.Spec.Members)
	for i := 1; i <= int(f.Spec.Members); i++ {
		inst := byIndex[i]
		if inst == nil {
			if inst, err = lookUpMissing(ctx, f, o, i); err != nil {
				return err
			}
		}
		o.members = append(o.members, newMemberObs(f, i, inst))
	}
	return nil
}

// lookUpMissing finds, by name, the instance of a member the list lacked
// (seen with a container still booting): at the name status recorded, then
// at the name a create would take, where another's instance blocks.
func lookUpMissing(ctx context.Context, f *redisv1alpha1.RedisSentinelFormation, o *observation, index int) (*incus.Instance, error) {
	create := createName(f, index)
	names := []string{create}
	if recorded := recordedInstance(f, index); recorded != "" && recorded != create {
		names = []string{recorded, create}
	}
	for _, name := range names {
		inst, err := o.incus.GetInstance(ctx, name)
		switch {
		case errors.Is(err, incus.ErrNotFound):
		case err != nil:
			o.degrade(ReasonIncusUnreachable, "reading instance %s: %v", name, err)
			return nil, err
		case inst.Config[keyFormationUID] == string(f.UID) && inst.Config[keyMember] == strconv.Itoa(index):
			return inst, nil
		case name == create:
			o.degrade(ReasonInstanceNotOwned, "an Incus instance named %s exists but is not member %s of this formation (%s=%q, %s=%q); it is left untouched, and the formation goes on once it is removed or renamed",
				name, memberName(f, index), keyFormationUID, inst.Config[keyFormationUID], keyMember, inst.Config[keyMember])
			return nil, errBlocked
		}
	}
	return nil, nil
}

// recordedIndex is the index of the member whose status names instance as
// its own or as abandoned; an error when none does.
func recordedIndex(f *redisv1alpha1.RedisSentinelFormation, instance string) (int, error) {
	for _, m := range f.Status.Members {
		if m.Instance == instance || m.AbandonedInstance == instance {
			return strconv.Atoi(strings.TrimPrefix(m.Name, f.Name+"-"))
		}
	}
	return 0, fmt.Errorf("instance %q is not recorded", instance)
}

// unreadable reports whether Incus could not read the member's instance
// (on an offline cluster member): its keys are unknown, so nothing is
// decided from them.
func (m *memberObs) unreadable() bool { return m.instance != nil && m.instance.Config == nil }

// recordedInstance is the instance name status recorded for member index.
func recordedInstance(f *redisv1alpha1.RedisSentinelFormation, index int) string {
	if m := findMember(f.Status.Members, memberName(f, index)); m != nil {
		return m.Instance
	}
	return ""
}

// createName is the name member index's next container is created under:
// the one status names for a member re-created after its host was lost
// (see replacementName), else InstanceName.
func createName(f *redisv1alpha1.RedisSentinelFormation, index int) string {
	if st := findMember(f.Status.Members, memberName(f, index)); st != nil && st.AbandonedInstance != "" && st.Instance != "" {
		return st.Instance
	}
	return InstanceName(f.Namespace, f.Name, index)
}

func newMemberObs(f *redisv1alpha1.RedisSentinelFormation, index int, inst *incus.Instance) *memberObs {
	m := &memberObs{index: index, name: memberName(f, index), instanceName: createName(f, index), instance: inst}
	if inst != nil {
		m.instanceName = inst.Name
	}
	m.Name = m.name
	m.Home = home(f, m)
	return m
}

// home is the member's redis-server endpoint at its address and port, also
// while its container is stopped (zero before it ever had an address).
func home(f *redisv1alpha1.RedisSentinelFormation, m *memberObs) endpoint.Endpoint {
	addr := memberAddress(f, m)
	if addr == "" {
		return endpoint.Endpoint{}
	}
	return endpoint.Endpoint{Host: addr, Port: memberPorts(f, m).redis}
}

// prerequisite is an Incus object a create needs.
type prerequisite struct {
	reason, kind, name, field string
	exists                    func(context.Context, string) (bool, error)
}

// checkPrerequisites names the missing image (or one of another engine),
// profile, network or pool before a create would fail on it, and before a
// rollout deletes a container it could then not rebuild.
func checkPrerequisites(ctx context.Context, f *redisv1alpha1.RedisSentinelFormation, o *observation) error {
	spec := f.Spec.Incus
	image := formationImage(f)
	props, ok, err := o.incus.ImageProperties(ctx, image)
	if err != nil {
		return fmt.Errorf("checking image alias %q: %w", image, err)
	}
	if !ok {
		o.missingPrerequisite = &problem{ReasonImageMissing, fmt.Sprintf("Incus has no image alias %q (spec.incus.image, or spec.engine's image when unset); nothing is created or replaced until it exists", image)}
		return nil
	}
	if mismatch := imageEngineMismatch(f, props); mismatch != "" {
		o.missingPrerequisite = &problem{ReasonImageEngineMismatch, mismatch}
		return nil
	}
	checks := []prerequisite{
		{ReasonNetworkMissing, "network", spec.Network, "spec.incus.network", o.incus.NetworkExists},
		{ReasonStoragePoolMissing, "storage pool", spec.StoragePool, "spec.incus.storagePool", o.incus.StoragePoolExists},
	}
	for _, p := range spec.Profiles {
		checks = append(checks, prerequisite{ReasonProfileMissing, "profile", p, "spec.incus.profiles", o.incus.ProfileExists})
	}
	for _, c := range checks {
		if c.name == "" {
			continue
		}
		ok, err := c.exists(ctx, c.name)
		if err != nil {
			return fmt.Errorf("checking %s %q: %w", c.kind, c.name, err)
		}
		if !ok {
			o.missingPrerequisite = &problem{c.reason, fmt.Sprintf("Incus has no %s %q (%s); nothing is created or replaced until it exists", c.kind, c.name, c.field)}
			return nil
		}
	}
	return nil
}

// probeScript reports, in one exec, whether the member was configured (the
// engine's Configured marker, which a rebuilt container lacks) and whether
// its two units are active. It runs only when a server did not answer, so
// a healthy formation costs no exec.
func probeScript(e engine.Engine) []string {
	return []string{"sh", "-c", render.AwaitSystemd + `printf '%s %s %s\n' "$(test -f ` + e.Configured + ` && echo yes || echo no)" ` +
		`"$(systemctl is-active ` + e.ServerUnit + `)" "$(systemctl is-active ` + e.SentinelUnit + `)"`}
}

// observeServers asks every running member's redis-server and sentinel, in
// parallel, and probes inside containers whose servers did not answer.
func (r *FormationReconciler) observeServers(ctx context.Context, f *redisv1alpha1.RedisSentinelFormation, o *observation, log logr.Logger) {
	var wg sync.WaitGroup
	for _, m := range o.members {
		if m.instance == nil || m.instance.Status != "Running" {
			continue
		}
		booting := m.instance.IPv4 == ""
		host := m.instance.IPv4
		if booting {
			host = m.instance.Devices["eth0"]["ipv4.address"]
		}
		if host == "" {
			continue // a DHCP lease to wait for
		}
		p := memberPorts(f, m)
		m.Redis = endpoint.Endpoint{Host: host, Port: p.redis}
		m.Sentinel = endpoint.Endpoint{Host: host, Port: p.sentinel}
		wg.Add(1)
		r.Guard.Go(componentObserve, func() {
			defer wg.Done()
			if booting {
				observeBooting(ctx, o, m, log)
				return
			}
			m.Running = true
			observeMember(ctx, f, o, m, log)
		})
	}
	// A leaving member's redis-server is read too: when it is the master,
	// a planned failover moves the role away before it is removed.
	for _, m := range o.leaving {
		if m.instance.Status != "Running" || m.instance.IPv4 == "" {
			continue
		}
		m.Running = true
		m.Redis = endpoint.Endpoint{Host: m.instance.IPv4, Port: memberPorts(f, m).redis}
		wg.Add(1)
		r.Guard.Go(componentObserve, func() {
			defer wg.Done()
			m.Repl, m.RedisErr = o.admin.Replication(ctx, m.Redis)
		})
	}
	wg.Wait()
}

func observeMember(ctx context.Context, f *redisv1alpha1.RedisSentinelFormation, o *observation, m *memberObs, log logr.Logger) {
	name := f.Spec.MasterName
	m.Repl, m.RedisErr = o.admin.Replication(ctx, m.Redis)
	m.View, m.SentinelErr = o.admin.SentinelMaster(ctx, m.Sentinel, name)
	if errors.Is(m.SentinelErr, redisadmin.ErrNoSuchMaster) {
		name = observeOtherNames(ctx, o, m)
	}
	if m.SentinelErr == nil {
		m.quorumErr = o.admin.SentinelCKQuorum(ctx, m.Sentinel, name)
	}
	if m.SentinelErr == nil && switchoverAwaitsSentinels(f) {
		if replicas, err := o.admin.SentinelReplicas(ctx, m.Sentinel, name); err == nil {
			m.replicaPriorities = map[endpoint.Endpoint]int{}
			for _, r := range replicas {
				m.replicaPriorities[r.Address] = r.Priority
			}
		}
	}
	if m.RedisErr != nil || (m.SentinelErr != nil && !errors.Is(m.SentinelErr, redisadmin.ErrNoSuchMaster)) {
		probe, err := probe(ctx, o.incus, m)
		if err != nil {
			log.Info("cannot probe member; treating it as unreachable until the next pass", "member", m.name, "instance", m.instanceName, "error", err.Error())
			return
		}
		m.Probe = probe
	}
}

// errNotConfigured stands for the servers of a member not configured yet.
var errNotConfigured = errors.New("not configured yet")

// observeBooting looks into a running member whose network is not up yet
// (its address is pinned, so it is known): dialing it would only time out.
// A member never configured is configured at once, its script waiting for
// the network (see configureMember); one configured before waits for its
// network like any member.
func observeBooting(ctx context.Context, o *observation, m *memberObs, log logr.Logger) {
	probe, err := probe(ctx, o.incus, m)
	if err != nil {
		log.Info("cannot probe booting member; looking again on the next pass", "member", m.name, "instance", m.instanceName, "error", err.Error())
		return
	}
	if !probe.Configured {
		m.Running, m.Probe = true, probe
		m.RedisErr, m.SentinelErr = errNotConfigured, errNotConfigured
	}
}

// observeOtherNames asks a sentinel that does not know spec.masterName
// which names it monitors instead (spec.masterName changed), only then so
// that a steady formation pays nothing for it. The view under the name
// with the newest config epoch stands for the sentinel's, so that the
// master and a failover under way are seen as before the change; it
// returns that name.
func observeOtherNames(ctx context.Context, o *observation, m *memberObs) string {
	masters, err := o.admin.SentinelMasters(ctx, m.Sentinel)
	if err != nil {
		m.SentinelErr = err
		return ""
	}
	if len(masters) == 0 {
		return ""
	}
	m.OtherNames = slices.Sorted(maps.Keys(masters))
	name := slices.MaxFunc(m.OtherNames, func(a, b string) int {
		return cmp.Or(cmp.Compare(masters[a].ConfigEpoch, masters[b].ConfigEpoch), strings.Compare(b, a))
	})
	m.View, m.SentinelErr = masters[name], nil
	return name
}

func probe(ctx context.Context, srv incus.Server, m *memberObs) (*topology.Probe, error) {
	res, err := srv.Exec(ctx, m.instanceName, probeScript(m.engine()))
	if err != nil {
		return nil, err
	}
	fields := strings.Fields(res.Stdout)
	if len(fields) != 3 {
		return nil, fmt.Errorf("unexpected probe output %q (exit %d)", res.Stdout, res.ExitCode)
	}
	active := func(state string) bool { return state == "active" || state == "activating" || state == "reloading" }
	return &topology.Probe{Configured: fields[0] == "yes", RedisActive: active(fields[1]), SentinelActive: active(fields[2])}, nil
}

// instanceStops are the stops the Incus event watcher heard of the
// formation's instances.
func (r *FormationReconciler) instanceStops(key client.ObjectKey, o *observation) map[string]time.Time {
	stops := map[string]time.Time{}
	for _, name := range instanceNames(o) {
		if at := r.InstanceWatcher.StoppedAt(key, name); !at.IsZero() {
			stops[name] = at
		}
	}
	return stops
}

// instanceNames are the instances of the members and leaving members, for
// the Incus event watcher.
func instanceNames(o *observation) []string {
	var names []string
	for _, list := range [][]*memberObs{o.members, o.leaving} {
		for _, m := range list {
			names = append(names, m.instanceName)
		}
	}
	return names
}

// adminCredentials are the operator's user on the members, and its TLS
// material when TLS is on.
func adminCredentials(creds acl.Set, t *tlsObs) redisadmin.Credentials {
	return redisadmin.Credentials{Username: acl.AdminUser, Password: creds[acl.Admin].Current, TLS: t.dial()}
}

// sentinelTargets are the formation's running sentinels, for the watcher.
func sentinelTargets(o *observation) []sentinel.Target {
	var targets []sentinel.Target
	for _, m := range o.members {
		if m.Running {
			targets = append(targets, sentinel.Target{Member: m.name, Addr: m.Sentinel.String()})
		}
	}
	return targets
}
