// Package incusfake is an in-memory incus.Server for fast controller tests.
//
// It mirrors the semantics of the real implementation that controllers rely
// on: ErrNotFound / ErrAlreadyExists wrapping, idempotent start and stop,
// DeleteInstance of a missing instance returning nil, instance-local devices
// created from the (fake) expanded ones, WriteFile treating mode 0 as 0644.
// Instances started, stopped or deleted through it (SetStatus included, as
// a crash or a stop from outside) emit the lifecycle events Incus would
// (instance-started, instance-stopped, instance-deleted) to every
// WatchLifecycle stream, timed by Now; Emit sends any other, and
// BreakStreams ends the streams as a restarting incusd would.
// Started instances get a deterministic IPv4 in 10.99.0.0/16 (10.99.0.2,
// 10.99.0.3, ... in creation order, 250 per /24; stable across restarts)
// unless eth0 pins ipv4.address. The addresses exist nowhere: nothing may
// dial them. Its networks are bridges on 10.99.0.1/16 whose addresses in
// use are the gateway and every instance's (see SetAddressing).
// It is safe for concurrent use.
package incusfake

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/incusops/redis-sentinel-operator/internal/engine"
	"github.com/incusops/redis-sentinel-operator/internal/incus"
)

// Method names used by Calls, SetFail and FailNext.
const (
	GetInstance          = "GetInstance"
	ListInstances        = "ListInstances"
	UnreadableInstances  = "UnreadableInstances"
	CreateInstance       = "CreateInstance"
	StartInstance        = "StartInstance"
	StopInstance         = "StopInstance"
	DeleteInstance       = "DeleteInstance"
	UpdateInstanceDevice = "UpdateInstanceDevice"
	WriteFile            = "WriteFile"
	Exec                 = "Exec"
	ImageProperties      = "ImageProperties"
	ProfileExists        = "ProfileExists"
	NetworkExists        = "NetworkExists"
	StoragePoolExists    = "StoragePoolExists"
	NetworkAddressing    = "NetworkAddressing"
	Info                 = "Info"
	ClusterMembers       = "ClusterMembers"
	WatchLifecycle       = "WatchLifecycle"
	// Connect is Fake.Server (the incus.ServerSource side).
	Connect = "Connect"
)

// WriteMethods are the methods that change Incus state; WriteCalls sums
// their calls.
var WriteMethods = []string{CreateInstance, StartInstance, StopInstance, DeleteInstance, UpdateInstanceDevice, WriteFile, Exec}

// File is a file written with WriteFile.
type File struct {
	Content []byte
	Mode    os.FileMode
	UID     int64
	GID     int64
}

// Fake implements incus.Server in memory. Use New.
type Fake struct {
	mu sync.Mutex

	// Fail injects an error per method name (persistent until removed).
	// Mutate it only via SetFail, or directly while no call is in flight.
	Fail map[string]error
	// ExecFunc, if set, handles Exec on running instances; otherwise Exec
	// returns exit code 0 and no output. Set it before use.
	ExecFunc func(instance string, command []string) (incus.ExecResult, error)
	// Now returns the creation time of new instances (default time.Now).
	Now func() time.Time
	// OnStart, OnStop and OnDelete, if set, are told (without the fake's
	// lock held, after the change) that an instance started (CreateInstance,
	// StartInstance, SetStatus "Running" of a stopped one), stopped
	// (StopInstance, SetStatus to another status, DeleteInstance of a
	// running one, each only when it was running) or was deleted. A
	// simulation of what runs inside the containers (redisfake) uses them
	// to bring its processes down and up with the container. Set them
	// before use.
	OnStart, OnStop, OnDelete func(instance string)
	// AddressAfterExec makes a started instance report no IPv4 until a
	// command ran in it, as a container whose network comes up while the
	// operator's first script waits for it. Set it before use.
	AddressAfterExec bool

	failNext map[string][]error
	calls    map[string]int

	instances map[string]*instance
	nextIP    int

	// ProfileDevices are the devices profiles contribute (the fake's
	// "expanded" devices), per profile name; New seeds the "rsf-redis"
	// profile with eth0 (nic on rsfbr0) and root (disk on pool rsf).
	ProfileDevices map[string]map[string]map[string]string

	images, profiles, networks, pools map[string]bool
	// imageProperties are the images' properties, by alias.
	imageProperties map[string]map[string]string
	// noAddressing are networks without an Incus-managed IPv4 subnet;
	// notBridged those that are not bridges at all (a nic on them takes
	// no ipv4.address).
	noAddressing, notBridged map[string]bool

	// ServerInfo is what Info returns (a standalone "6.0.4" by default).
	ServerInfo incus.ServerInfo

	streams map[*stream]struct{}
}

// stream is one WatchLifecycle call: events queue up unbounded, so that
// emitting never waits for a slow handler.
type stream struct {
	mu     sync.Mutex
	queue  []incus.LifecycleEvent
	wake   chan struct{}
	broken chan error
}

type instance struct {
	spec    incus.InstanceSpec
	status  string
	ip      string
	created time.Time
	files   map[string]File
	// booting: started, its address not up yet (AddressAfterExec).
	booting bool
	// location is the cluster member it is on ("none" on a standalone
	// server); stranded is its status from before its member went offline.
	location, stranded string
}

var _ incus.Server = (*Fake)(nil)

// New returns an empty fake that knows the lab's image aliases
// "rsf-redis7-bookworm-v1" and "rsf-valkey8-bookworm-v1" (with their
// user.rsf.engine property), the profile "rsf-redis", the network "rsfbr0"
// and the storage pool "rsf" (remove or add others with the Set* methods).
func New() *Fake {
	return &Fake{
		Fail:      map[string]error{},
		Now:       time.Now,
		failNext:  map[string][]error{},
		calls:     map[string]int{},
		instances: map[string]*instance{},
		nextIP:    0,
		ProfileDevices: map[string]map[string]map[string]string{
			"rsf-redis": {
				"eth0": {"type": "nic", "network": "rsfbr0", "name": "eth0"},
				"root": {"type": "disk", "path": "/", "pool": "rsf"},
			},
		},
		images: map[string]bool{"rsf-redis7-bookworm-v1": true, "rsf-valkey8-bookworm-v1": true},
		imageProperties: map[string]map[string]string{
			"rsf-redis7-bookworm-v1":  {engine.Property: string(engine.Redis)},
			"rsf-valkey8-bookworm-v1": {engine.Property: string(engine.Valkey)},
		},
		profiles:   map[string]bool{"rsf-redis": true},
		networks:   map[string]bool{"rsfbr0": true},
		pools:      map[string]bool{"rsf": true},
		ServerInfo: incus.ServerInfo{Version: "6.0.4"},
		streams:    map[*stream]struct{}{},
	}
}

// SetFail makes every call of method fail with err (nil clears it).
func (f *Fake) SetFail(method string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()

	if err == nil {
		delete(f.Fail, method)
		return
	}

	f.Fail[method] = err
}

// FailNext makes the next call of method fail with err (queued, one-shot).
func (f *Fake) FailNext(method string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()

	f.failNext[method] = append(f.failNext[method], err)
}

// Calls returns a copy of the per-method call counters (failed calls count).
func (f *Fake) Calls() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()

	return maps.Clone(f.calls)
}

// WriteCalls returns the number of calls of WriteMethods.
func (f *Fake) WriteCalls() int {
	f.mu.Lock()
	defer f.mu.Unlock()

	n := 0
	for _, m := range WriteMethods {
		n += f.calls[m]
	}

	return n
}

// ResetCalls zeroes the call counters.
func (f *Fake) ResetCalls() {
	f.mu.Lock()
	defer f.mu.Unlock()

	f.calls = map[string]int{}
}

// SetImageAlias, SetProfile, SetNetwork and SetStoragePool make the
// corresponding *Exists method (ImageProperties for images) report exists.
func (f *Fake) SetImageAlias(name string, exists bool) { f.set(f.images, name, exists) }

// SetImageProperties makes alias exist with props.
func (f *Fake) SetImageProperties(alias string, props map[string]string) {
	f.set(f.images, alias, true)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.imageProperties[alias] = maps.Clone(props)
}

// SetProfile see SetImageAlias.
func (f *Fake) SetProfile(name string, exists bool) { f.set(f.profiles, name, exists) }

// SetNetwork see SetImageAlias.
func (f *Fake) SetNetwork(name string, exists bool) { f.set(f.networks, name, exists) }

// SetAddressing says whether Incus manages IPv4 addresses on the network
// (it does on every network by default).
func (f *Fake) SetAddressing(network string, managed bool) {
	f.mu.Lock()
	defer f.mu.Unlock()

	if f.noAddressing == nil {
		f.noAddressing = map[string]bool{}
	}

	f.noAddressing[network] = !managed
}

// SetNotBridged makes a network a macvlan: NetworkAddressing reports
// ErrNotBridged, and a nic on it refuses ipv4.address as Incus does.
func (f *Fake) SetNotBridged(network string) {
	f.mu.Lock()
	defer f.mu.Unlock()

	if f.notBridged == nil {
		f.notBridged = map[string]bool{}
	}

	f.notBridged[network] = true
}

// pinRefused is Incus's refusal of ipv4.address on a nic of a network
// that is not a bridge. Called with f.mu held.
func (f *Fake) pinRefused(dev map[string]string) error {
	if dev["ipv4.address"] != "" && f.notBridged[dev["network"]] {
		return fmt.Errorf("incusfake: invalid device option %q on a nic of network %q, which is not a bridge", "ipv4.address", dev["network"])
	}

	return nil
}

// SetStoragePool see SetImageAlias.
func (f *Fake) SetStoragePool(name string, exists bool) { f.set(f.pools, name, exists) }

func (f *Fake) set(m map[string]bool, name string, exists bool) {
	f.mu.Lock()
	defer f.mu.Unlock()

	if exists {
		m[name] = true
	} else {
		delete(m, name)
	}
}

// File returns a file written with WriteFile.
func (f *Fake) File(instanceName, path string) (File, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()

	inst, ok := f.instances[instanceName]
	if !ok {
		return File{}, false
	}

	file, ok := inst.files[path]
	file.Content = bytes.Clone(file.Content)

	return file, ok
}

// Files returns the paths written in an instance, sorted.
func (f *Fake) Files(instanceName string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()

	inst, ok := f.instances[instanceName]
	if !ok {
		return nil
	}

	return slices.Sorted(maps.Keys(inst.files))
}

// Names returns the instance names, sorted.
func (f *Fake) Names() []string {
	f.mu.Lock()
	defer f.mu.Unlock()

	return slices.Sorted(maps.Keys(f.instances))
}

// SetStatus forces an instance's status (e.g. "Stopped" to simulate a
// crash, "Error"); "Running" assigns an address like a start would.
func (f *Fake) SetStatus(name, status string) error {
	f.mu.Lock()

	inst, ok := f.instances[name]
	if !ok {
		f.mu.Unlock()
		return fmt.Errorf("%w: instance %q", incus.ErrNotFound, name)
	}

	was := inst.status
	if status == "Running" {
		f.start(inst)
	} else {
		inst.status = status
	}
	f.mu.Unlock()
	f.transition(name, was, status)

	return nil
}

// transition tells the hooks and the event streams about a status change.
// Called without f.mu.
func (f *Fake) transition(name, was, is string) {
	switch {
	case was != "Running" && is == "Running":
		if f.OnStart != nil {
			f.OnStart(name)
		}
		f.emit(name, incus.ActionInstanceStarted)
	case was == "Running" && is != "Running":
		if f.OnStop != nil {
			f.OnStop(name)
		}
		f.emit(name, incus.ActionInstanceStopped)
	}
}

func (f *Fake) emit(name, action string) {
	f.Emit(incus.LifecycleEvent{Time: f.Now(), Action: action, Instance: name})
}

// AddInstance inserts an instance as if created by CreateInstance, with the
// given status ("Running" or "Stopped").
func (f *Fake) AddInstance(spec incus.InstanceSpec, status string) error {
	f.mu.Lock()
	defer f.mu.Unlock()

	if _, ok := f.instances[spec.Name]; ok {
		return fmt.Errorf("%w: instance %q", incus.ErrAlreadyExists, spec.Name)
	}

	inst := f.add(spec)
	if status == "Running" {
		f.start(inst)
	} else {
		inst.status = status
	}

	return nil
}

// enter counts the call and returns an injected or context error. Called
// with f.mu held.
func (f *Fake) enter(ctx context.Context, method string) error {
	f.calls[method]++

	if q := f.failNext[method]; len(q) > 0 {
		f.failNext[method] = q[1:]
		return q[0]
	}

	if err := f.Fail[method]; err != nil {
		return err
	}

	return ctx.Err()
}

func (f *Fake) add(spec incus.InstanceSpec) *instance {
	spec.Profiles = slices.Clone(spec.Profiles)
	spec.Config = maps.Clone(spec.Config)
	spec.Devices = incus.CloneDevices(spec.Devices)

	if spec.Config == nil {
		spec.Config = map[string]string{}
	}

	if spec.Devices == nil {
		spec.Devices = map[string]map[string]string{}
	}

	inst := &instance{
		spec:     spec,
		status:   "Stopped",
		ip:       fmt.Sprintf("10.99.%d.%d", f.nextIP/250, f.nextIP%250+2), // 2..251 per /24, then the next one
		created:  f.Now(),
		files:    map[string]File{},
		location: f.place(spec.Target),
	}
	f.nextIP++
	f.instances[spec.Name] = inst

	return inst
}

func (f *Fake) start(inst *instance) {
	inst.status = "Running"
	inst.booting = f.AddressAfterExec
}

func (f *Fake) expandedDevices(inst *instance) map[string]map[string]string {
	out := map[string]map[string]string{}

	for _, p := range inst.spec.Profiles {
		for name, dev := range f.ProfileDevices[p] {
			out[name] = maps.Clone(dev)
		}
	}

	for name, dev := range inst.spec.Devices {
		out[name] = maps.Clone(dev)
	}

	return out
}

func (f *Fake) view(inst *instance) incus.Instance {
	v := incus.Instance{
		Name:      inst.spec.Name,
		Status:    inst.status,
		Config:    maps.Clone(inst.spec.Config),
		Devices:   incus.CloneDevices(inst.spec.Devices),
		Location:  inst.location,
		CreatedAt: inst.created,
	}

	if inst.stranded != "" {
		// On an offline member Incus knows only the name, location and
		// that it cannot be reached.
		v.Config, v.Devices = nil, nil
	}

	if inst.status == "Running" && !inst.booting {
		v.IPv4 = inst.ip
		if pinned := f.expandedDevices(inst)["eth0"]["ipv4.address"]; pinned != "" {
			v.IPv4 = pinned
		}
	}

	return v
}

// InstanceConfig returns an instance's config keys (nil when it does not
// exist), without counting a call.
func (f *Fake) InstanceConfig(name string) map[string]string {
	f.mu.Lock()
	defer f.mu.Unlock()

	if inst := f.instances[name]; inst != nil {
		return maps.Clone(inst.spec.Config)
	}

	return nil
}

// GetInstance implements incus.Server.
func (f *Fake) GetInstance(ctx context.Context, name string) (*incus.Instance, error) {
	f.mu.Lock()
	defer f.mu.Unlock()

	if err := f.enter(ctx, GetInstance); err != nil {
		return nil, err
	}

	inst, ok := f.instances[name]
	if !ok {
		return nil, fmt.Errorf("%w: instance %q", incus.ErrNotFound, name)
	}

	if err := unreachable(inst); err != nil {
		return nil, err
	}

	v := f.view(inst)

	return &v, nil
}

// ListInstances implements incus.Server.
func (f *Fake) ListInstances(ctx context.Context, configKey, value string) ([]incus.Instance, error) {
	f.mu.Lock()
	defer f.mu.Unlock()

	if err := f.enter(ctx, ListInstances); err != nil {
		return nil, err
	}

	out := []incus.Instance{}

	for _, name := range slices.Sorted(maps.Keys(f.instances)) {
		inst := f.instances[name]
		if v, ok := inst.spec.Config[configKey]; ok && v == value && inst.stranded == "" {
			out = append(out, f.view(inst))
		}
	}

	return out, nil
}

// UnreadableInstances implements incus.Server: the instances on offline
// cluster members (see SetMemberStatus).
func (f *Fake) UnreadableInstances(ctx context.Context) ([]incus.Instance, error) {
	f.mu.Lock()
	defer f.mu.Unlock()

	if err := f.enter(ctx, UnreadableInstances); err != nil {
		return nil, err
	}

	var out []incus.Instance

	for _, name := range slices.Sorted(maps.Keys(f.instances)) {
		if inst := f.instances[name]; inst.stranded != "" {
			out = append(out, f.view(inst))
		}
	}

	return out, nil
}

// CreateInstance implements incus.Server.
func (f *Fake) CreateInstance(ctx context.Context, spec incus.InstanceSpec) error {
	if err := f.createInstance(ctx, spec); err != nil {
		return err
	}
	f.transition(spec.Name, "Stopped", "Running")

	return nil
}

func (f *Fake) createInstance(ctx context.Context, spec incus.InstanceSpec) error {
	f.mu.Lock()
	defer f.mu.Unlock()

	if err := f.enter(ctx, CreateInstance); err != nil {
		return err
	}

	if spec.Name == "" || spec.Image == "" {
		return fmt.Errorf("incusfake: create instance: name and image are required")
	}

	if _, ok := f.instances[spec.Name]; ok {
		return fmt.Errorf("%w: instance %q", incus.ErrAlreadyExists, spec.Name)
	}

	if !f.images[spec.Image] {
		return fmt.Errorf("incusfake: create instance %q: image alias %q not found", spec.Name, spec.Image)
	}

	for _, p := range spec.Profiles {
		if !f.profiles[p] {
			return fmt.Errorf("incusfake: create instance %q: profile %q not found", spec.Name, p)
		}
	}

	for _, dev := range spec.Devices {
		if err := f.pinRefused(dev); err != nil {
			return err
		}
	}

	f.start(f.add(spec))

	return nil
}

// StartInstance implements incus.Server.
func (f *Fake) StartInstance(ctx context.Context, name string) error {
	f.mu.Lock()

	if err := f.enter(ctx, StartInstance); err != nil {
		f.mu.Unlock()
		return err
	}

	inst, ok := f.instances[name]
	if !ok {
		f.mu.Unlock()
		return fmt.Errorf("%w: instance %q", incus.ErrNotFound, name)
	}

	if err := unreachable(inst); err != nil {
		f.mu.Unlock()
		return err
	}

	was := inst.status
	f.start(inst)
	f.mu.Unlock()
	f.transition(name, was, "Running")

	return nil
}

// StopInstance implements incus.Server.
func (f *Fake) StopInstance(ctx context.Context, name string, force bool) error {
	f.mu.Lock()

	if err := f.enter(ctx, StopInstance); err != nil {
		f.mu.Unlock()
		return err
	}

	inst, ok := f.instances[name]
	if !ok {
		f.mu.Unlock()
		return fmt.Errorf("%w: instance %q", incus.ErrNotFound, name)
	}

	was := inst.status
	inst.status = "Stopped"
	f.mu.Unlock()
	f.transition(name, was, "Stopped")

	return nil
}

// DeleteInstance implements incus.Server.
func (f *Fake) DeleteInstance(ctx context.Context, name string) error {
	f.mu.Lock()

	if err := f.enter(ctx, DeleteInstance); err != nil {
		f.mu.Unlock()
		return err
	}

	inst, ok := f.instances[name]
	if ok {
		if err := unreachable(inst); err != nil {
			f.mu.Unlock()
			return err
		}
	}
	delete(f.instances, name)
	f.mu.Unlock()

	if !ok {
		return nil
	}

	f.transition(name, inst.status, "Stopped")

	if f.OnDelete != nil {
		f.OnDelete(name)
	}

	f.emit(name, incus.ActionInstanceDeleted)

	return nil
}

// UpdateInstanceDevice implements incus.Server.
func (f *Fake) UpdateInstanceDevice(ctx context.Context, name, device string, values map[string]string) error {
	f.mu.Lock()
	defer f.mu.Unlock()

	if err := f.enter(ctx, UpdateInstanceDevice); err != nil {
		return err
	}

	inst, ok := f.instances[name]
	if !ok {
		return fmt.Errorf("%w: instance %q", incus.ErrNotFound, name)
	}

	dev, local := inst.spec.Devices[device]

	switch {
	case local:
		dev = maps.Clone(dev)
	case f.expandedDevices(inst)[device] != nil:
		dev = f.expandedDevices(inst)[device]
	case values["type"] != "":
		dev = map[string]string{}
	default:
		return fmt.Errorf("incusfake: update device %s of %q: %w: no such device and no type given", device, name, incus.ErrNotFound)
	}

	maps.Copy(dev, values)
	if err := f.pinRefused(dev); err != nil {
		return err
	}
	inst.spec.Devices[device] = dev

	return nil
}

// WriteFile implements incus.Server.
func (f *Fake) WriteFile(ctx context.Context, instanceName, path string, content []byte, mode os.FileMode, uid, gid int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()

	if err := f.enter(ctx, WriteFile); err != nil {
		return err
	}

	inst, ok := f.instances[instanceName]
	if !ok {
		return fmt.Errorf("%w: instance %q", incus.ErrNotFound, instanceName)
	}

	if !strings.HasPrefix(path, "/") {
		return fmt.Errorf("incusfake: write %s in %q: path must be absolute", path, instanceName)
	}

	perm := mode.Perm()
	if perm == 0 {
		perm = 0o644
	}

	inst.files[path] = File{Content: bytes.Clone(content), Mode: perm, UID: uid, GID: gid}

	return nil
}

// Exec implements incus.Server. ExecFunc runs without the fake's lock held,
// so it may call back into the fake.
func (f *Fake) Exec(ctx context.Context, instanceName string, command []string) (incus.ExecResult, error) {
	f.mu.Lock()

	if err := f.enter(ctx, Exec); err != nil {
		f.mu.Unlock()
		return incus.ExecResult{}, err
	}

	inst, ok := f.instances[instanceName]
	if !ok {
		f.mu.Unlock()
		return incus.ExecResult{}, fmt.Errorf("%w: instance %q", incus.ErrNotFound, instanceName)
	}

	if err := unreachable(inst); err != nil {
		f.mu.Unlock()
		return incus.ExecResult{}, err
	}

	if inst.status != "Running" {
		f.mu.Unlock()
		return incus.ExecResult{}, fmt.Errorf("incusfake: exec in %q: instance is not running", instanceName)
	}

	if len(command) == 0 {
		f.mu.Unlock()
		return incus.ExecResult{}, fmt.Errorf("incusfake: exec: empty command")
	}

	inst.booting = false
	fn := f.ExecFunc
	f.mu.Unlock()

	if fn == nil {
		return incus.ExecResult{}, nil
	}

	return fn(instanceName, slices.Clone(command))
}

// ImageProperties implements incus.Server.
func (f *Fake) ImageProperties(ctx context.Context, alias string) (map[string]string, bool, error) {
	ok, err := f.exists(ctx, ImageProperties, f.images, alias)
	if !ok || err != nil {
		return nil, ok, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.imageProperties[alias]), true, nil
}

// ProfileExists implements incus.Server.
func (f *Fake) ProfileExists(ctx context.Context, name string) (bool, error) {
	return f.exists(ctx, ProfileExists, f.profiles, name)
}

// NetworkExists implements incus.Server.
func (f *Fake) NetworkExists(ctx context.Context, name string) (bool, error) {
	return f.exists(ctx, NetworkExists, f.networks, name)
}

// StoragePoolExists implements incus.Server.
func (f *Fake) StoragePoolExists(ctx context.Context, name string) (bool, error) {
	return f.exists(ctx, StoragePoolExists, f.pools, name)
}

func (f *Fake) exists(ctx context.Context, method string, m map[string]bool, name string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()

	if err := f.enter(ctx, method); err != nil {
		return false, err
	}

	return m[name], nil
}

// NetworkAddressing implements incus.Server.
func (f *Fake) NetworkAddressing(ctx context.Context, network string) (incus.Addressing, error) {
	f.mu.Lock()
	defer f.mu.Unlock()

	if err := f.enter(ctx, NetworkAddressing); err != nil {
		return incus.Addressing{}, err
	}

	if !f.networks[network] {
		return incus.Addressing{}, fmt.Errorf("%w: network %q", incus.ErrNotFound, network)
	}

	if f.notBridged[network] {
		return incus.Addressing{}, fmt.Errorf("%w: %q", incus.ErrNotBridged, network)
	}

	if f.noAddressing[network] {
		return incus.Addressing{}, fmt.Errorf("%w: %q", incus.ErrNoAddressing, network)
	}

	gw := netip.MustParsePrefix("10.99.0.1/16")
	a := incus.Addressing{Gateway: gw, InUse: []netip.Addr{gw.Addr()}}

	for _, name := range slices.Sorted(maps.Keys(f.instances)) {
		addr := f.instances[name].ip
		if pinned := f.expandedDevices(f.instances[name])["eth0"]["ipv4.address"]; pinned != "" {
			addr = pinned
		}

		a.InUse = append(a.InUse, netip.MustParseAddr(addr))
	}

	return a, nil
}

// Info implements incus.Server.
func (f *Fake) Info(ctx context.Context) (incus.ServerInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()

	if err := f.enter(ctx, Info); err != nil {
		return incus.ServerInfo{}, err
	}

	info := f.ServerInfo
	info.Members = slices.Clone(info.Members)
	return info, nil
}

// ClusterMembers implements incus.Server.
func (f *Fake) ClusterMembers(ctx context.Context) ([]incus.ClusterMember, error) {
	f.mu.Lock()
	defer f.mu.Unlock()

	if err := f.enter(ctx, ClusterMembers); err != nil {
		return nil, err
	}

	return slices.Clone(f.ServerInfo.Members), nil
}

// SetCluster makes the fake a cluster of these members (all Online unless
// a status is given). Instances created without a target go to the online
// member with the fewest instances, as Incus's default placement does.
func (f *Fake) SetCluster(members ...incus.ClusterMember) {
	f.mu.Lock()
	defer f.mu.Unlock()

	f.ServerInfo.Clustered = true
	f.ServerInfo.Members = nil
	for _, m := range members {
		if m.Status == "" {
			m.Status = incus.MemberOnline
		}
		f.ServerInfo.Members = append(f.ServerInfo.Members, m)
	}
}

// SetMemberStatus changes a cluster member's status. Its instances show
// "Error" while it is "Offline", and every call on them fails; back
// online, they come back as they were, except that one with
// boot.autostart=false stays stopped (Incus restarts the others).
func (f *Fake) SetMemberStatus(member, status string) {
	f.mu.Lock()

	var back, lost []string
	for i := range f.ServerInfo.Members {
		if f.ServerInfo.Members[i].Name == member {
			f.ServerInfo.Members[i].Status = status
		}
	}
	for _, name := range slices.Sorted(maps.Keys(f.instances)) {
		inst := f.instances[name]
		switch {
		case inst.location != member:
		case status == "Offline" && inst.stranded == "":
			if inst.status == "Running" {
				lost = append(lost, name)
			}
			inst.stranded, inst.status = inst.status, "Error"
		case status != "Offline" && inst.stranded != "":
			inst.status = "Stopped"
			if inst.stranded == "Running" && inst.spec.Config["boot.autostart"] != "false" {
				f.start(inst)
				back = append(back, name)
			}
			inst.stranded = ""
		}
	}
	f.mu.Unlock()

	// A lost host sends no event: its processes are simply gone.
	for _, name := range lost {
		if f.OnStop != nil {
			f.OnStop(name)
		}
	}
	for _, name := range back {
		f.transition(name, "Stopped", "Running")
	}
}

// Location returns the cluster member an instance is on ("" if it does
// not exist), without counting a call.
func (f *Fake) Location(name string) string {
	f.mu.Lock()
	defer f.mu.Unlock()

	if inst := f.instances[name]; inst != nil {
		return inst.location
	}

	return ""
}

// place is where a new instance goes: its target, else the online member
// with the fewest instances ("none" on a standalone server).
func (f *Fake) place(target string) string {
	if target != "" {
		return target
	}

	if !f.ServerInfo.Clustered {
		return "none"
	}

	best, fewest := "", -1
	for _, m := range f.ServerInfo.Members {
		if m.Status != incus.MemberOnline {
			continue
		}
		n := 0
		for _, inst := range f.instances {
			if inst.location == m.Name {
				n++
			}
		}
		if fewest < 0 || n < fewest {
			best, fewest = m.Name, n
		}
	}

	return best
}

// unreachable is the error of a call on an instance whose cluster member
// is offline. Called with f.mu held.
func unreachable(inst *instance) error {
	if inst.stranded == "" {
		return nil
	}

	return fmt.Errorf("incusfake: instance %q: cluster member %q is offline", inst.spec.Name, inst.location)
}

var _ incus.ServerSource = (*Fake)(nil)

// Server implements incus.ServerSource: it returns the fake itself for any
// Options (counted as "Connect").
func (f *Fake) Server(ctx context.Context, _ incus.Options) (incus.Server, error) {
	f.mu.Lock()
	defer f.mu.Unlock()

	if err := f.enter(ctx, Connect); err != nil {
		return nil, err
	}

	return f, nil
}

// Forget implements incus.ServerSource (no-op, counted as "Forget").
func (f *Fake) Forget(incus.Options) {
	f.mu.Lock()
	defer f.mu.Unlock()

	f.calls["Forget"]++
}

// WatchLifecycle implements incus.Server: the stream gets every event
// emitted from its start until ctx ends or BreakStreams. The event's
// Project is "" (the fake has no projects) unless Emit sets one.
func (f *Fake) WatchLifecycle(ctx context.Context, connected func(), handle func(incus.LifecycleEvent)) error {
	f.mu.Lock()
	if err := f.enter(ctx, WatchLifecycle); err != nil {
		f.mu.Unlock()
		return err
	}

	s := &stream{wake: make(chan struct{}, 1), broken: make(chan error, 1)}
	f.streams[s] = struct{}{}
	f.mu.Unlock()

	defer func() {
		f.mu.Lock()
		delete(f.streams, s)
		f.mu.Unlock()
	}()

	connected()

	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-s.broken:
			return err
		case <-s.wake:
			s.mu.Lock()
			queue := s.queue
			s.queue = nil
			s.mu.Unlock()

			for _, e := range queue {
				handle(e)
			}
		}
	}
}

// Emit sends a lifecycle event to every stream, as if it happened in Incus
// (e.g. an instance stopped by someone else).
func (f *Fake) Emit(e incus.LifecycleEvent) {
	f.mu.Lock()
	streams := slices.Collect(maps.Keys(f.streams))
	f.mu.Unlock()

	for _, s := range streams {
		s.mu.Lock()
		s.queue = append(s.queue, e)
		s.mu.Unlock()

		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

// BreakStreams ends every WatchLifecycle stream with err, as a restarted
// incusd does.
func (f *Fake) BreakStreams(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()

	for s := range f.streams {
		select {
		case s.broken <- err:
		default:
		}

		delete(f.streams, s)
	}
}

// Streams returns how many WatchLifecycle streams are open.
func (f *Fake) Streams() int {
	f.mu.Lock()
	defer f.mu.Unlock()

	return len(f.streams)
}
