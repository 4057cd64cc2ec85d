package incus

import (
	"context"
	"maps"
	"os"
	"slices"
	"sync"
)

// Method names counted by CountingSource.
const (
	MethodGetInstance          = "GetInstance"
	MethodListInstances        = "ListInstances"
	MethodUnreadableInstances  = "UnreadableInstances"
	MethodCreateInstance       = "CreateInstance"
	MethodStartInstance        = "StartInstance"
	MethodStopInstance         = "StopInstance"
	MethodDeleteInstance       = "DeleteInstance"
	MethodUpdateInstanceDevice = "UpdateInstanceDevice"
	MethodWriteFile            = "WriteFile"
	MethodExec                 = "Exec"
	MethodImageProperties      = "ImageProperties"
	MethodProfileExists        = "ProfileExists"
	MethodNetworkExists        = "NetworkExists"
	MethodStoragePoolExists    = "StoragePoolExists"
	MethodNetworkAddressing    = "NetworkAddressing"
	MethodInfo                 = "Info"
	MethodClusterMembers       = "ClusterMembers"
	MethodWatchLifecycle       = "WatchLifecycle"
)

// WriteMethods are the Server methods that change Incus state (or run
// something inside an instance); every other method only reads.
var WriteMethods = []string{
	MethodCreateInstance, MethodStartInstance, MethodStopInstance, MethodDeleteInstance,
	MethodUpdateInstanceDevice, MethodWriteFile, MethodExec,
}

// CountingSource wraps a ServerSource and counts every call of every
// Server it hands out, per method, split into reads and writes. It is for
// benchmarks and tests: it measures what the operator asks of Incus, e.g.
// how many calls a reconcile of an unchanged formation makes.
//
// ServerSource.Server and Forget are not Server calls: they are counted
// apart (Connects, Forgets) and are neither reads nor writes. Failed calls
// count like successful ones. WatchLifecycle counts once per stream (a
// read), however many events the stream carries. Safe for concurrent use.
type CountingSource struct {
	inner ServerSource

	mu       sync.Mutex
	calls    map[string]int64
	connects int64
	forgets  int64
}

var _ ServerSource = (*CountingSource)(nil)

// Counting returns a CountingSource around inner.
func Counting(inner ServerSource) *CountingSource {
	return &CountingSource{inner: inner, calls: map[string]int64{}}
}

// Server implements ServerSource; the returned Server counts its calls.
func (c *CountingSource) Server(ctx context.Context, opts Options) (Server, error) {
	c.mu.Lock()
	c.connects++
	c.mu.Unlock()
	srv, err := c.inner.Server(ctx, opts)
	if err != nil {
		return nil, err
	}
	return &countingServer{inner: srv, c: c}, nil
}

// Forget implements ServerSource.
func (c *CountingSource) Forget(opts Options) {
	c.mu.Lock()
	c.forgets++
	c.mu.Unlock()
	c.inner.Forget(opts)
}

// Calls returns a copy of the per-method counters.
func (c *CountingSource) Calls() map[string]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.calls)
}

// Writes is the number of calls of WriteMethods.
func (c *CountingSource) Writes() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var n int64
	for _, m := range WriteMethods {
		n += c.calls[m]
	}
	return n
}

// Reads is the number of calls of every other Server method.
func (c *CountingSource) Reads() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var n int64
	for m, v := range c.calls {
		if !slices.Contains(WriteMethods, m) {
			n += v
		}
	}
	return n
}

// Connects and Forgets count the ServerSource calls.
func (c *CountingSource) Connects() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.connects
}

// Forgets see Connects.
func (c *CountingSource) Forgets() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.forgets
}

// Reset zeroes every counter.
func (c *CountingSource) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = map[string]int64{}
	c.connects, c.forgets = 0, 0
}

func (c *CountingSource) count(method string) {
	c.mu.Lock()
	c.calls[method]++
	c.mu.Unlock()
}

type countingServer struct {
	inner Server
	c     *CountingSource
}

var _ Server = (*countingServer)(nil)

func (s *countingServer) GetInstance(ctx context.Context, name string) (*Instance, error) {
	s.c.count(MethodGetInstance)
	return s.inner.GetInstance(ctx, name)
}

func (s *countingServer) ListInstances(ctx context.Context, configKey, value string) ([]Instance, error) {
	s.c.count(MethodListInstances)
	return s.inner.ListInstances(ctx, configKey, value)
}

func (s *countingServer) UnreadableInstances(ctx context.Context) ([]Instance, error) {
	s.c.count(MethodUnreadableInstances)
	return s.inner.UnreadableInstances(ctx)
}

func (s *countingServer) CreateInstance(ctx context.Context, spec InstanceSpec) error {
	s.c.count(MethodCreateInstance)
	return s.inner.CreateInstance(ctx, spec)
}

func (s *countingServer) StartInstance(ctx context.Context, name string) error {
	s.c.count(MethodStartInstance)
	return s.inner.StartInstance(ctx, name)
}

func (s *countingServer) StopInstance(ctx context.Context, name string, force bool) error {
	s.c.count(MethodStopInstance)
	return s.inner.StopInstance(ctx, name, force)
}

func (s *countingServer) DeleteInstance(ctx context.Context, name string) error {
	s.c.count(MethodDeleteInstance)
	return s.inner.DeleteInstance(ctx, name)
}

func (s *countingServer) UpdateInstanceDevice(ctx context.Context, name, device string, values map[string]string) error {
	s.c.count(MethodUpdateInstanceDevice)
	return s.inner.UpdateInstanceDevice(ctx, name, device, values)
}

func (s *countingServer) WriteFile(ctx context.Context, instance, path string, content []byte, mode os.FileMode, uid, gid int64) error {
	s.c.count(MethodWriteFile)
	return s.inner.WriteFile(ctx, instance, path, content, mode, uid, gid)
}

func (s *countingServer) Exec(ctx context.Context, instance string, command []string) (ExecResult, error) {
	s.c.count(MethodExec)
	return s.inner.Exec(ctx, instance, command)
}

func (s *countingServer) ImageProperties(ctx context.Context, alias string) (map[string]string, bool, error) {
	s.c.count(MethodImageProperties)
	return s.inner.ImageProperties(ctx, alias)
}

func (s *countingServer) ProfileExists(ctx context.Context, name string) (bool, error) {
	s.c.count(MethodProfileExists)
	return s.inner.ProfileExists(ctx, name)
}

func (s *countingServer) NetworkExists(ctx context.Context, name string) (bool, error) {
	s.c.count(MethodNetworkExists)
	return s.inner.NetworkExists(ctx, name)
}

func (s *countingServer) StoragePoolExists(ctx context.Context, name string) (bool, error) {
	s.c.count(MethodStoragePoolExists)
	return s.inner.StoragePoolExists(ctx, name)
}

func (s *countingServer) NetworkAddressing(ctx context.Context, network string) (Addressing, error) {
	s.c.count(MethodNetworkAddressing)
	return s.inner.NetworkAddressing(ctx, network)
}

func (s *countingServer) Info(ctx context.Context) (ServerInfo, error) {
	s.c.count(MethodInfo)
	return s.inner.Info(ctx)
}

func (s *countingServer) ClusterMembers(ctx context.Context) ([]ClusterMember, error) {
	s.c.count(MethodClusterMembers)
	return s.inner.ClusterMembers(ctx)
}

func (s *countingServer) WatchLifecycle(ctx context.Context, connected func(), handle func(LifecycleEvent)) error {
	s.c.count(MethodWatchLifecycle)
	return s.inner.WatchLifecycle(ctx, connected, handle)
}
