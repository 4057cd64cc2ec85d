package redisadmin

import (
	"context"
	"maps"
	"sync"
	"time"

	"github.com/incusops/redis-sentinel-operator/internal/acl"
	"github.com/incusops/redis-sentinel-operator/internal/endpoint"
)

// Admin method names counted by CountingDialer.
const (
	MethodReplication       = "Replication"
	MethodReplicaOf         = "ReplicaOf"
	MethodConfigSet         = "ConfigSet"
	MethodSetUser           = "SetUser"
	MethodPauseWrites       = "PauseWrites"
	MethodResumeWrites      = "ResumeWrites"
	MethodSentinelMaster    = "SentinelMaster"
	MethodSentinelMasters   = "SentinelMasters"
	MethodSentinelCKQuorum  = "SentinelCKQuorum"
	MethodSentinelMonitor   = "SentinelMonitor"
	MethodSentinelRemove    = "SentinelRemove"
	MethodSentinelSet       = "SentinelSet"
	MethodSentinelReset     = "SentinelReset"
	MethodSentinelFailover  = "SentinelFailover"
	MethodSentinelReplicas  = "SentinelReplicas"
	MethodSentinelSetUser   = "SentinelSetUser"
	MethodSentinelConfigSet = "SentinelConfigSet"
)

// ReadMethods are the Admin methods that only read; every other one
// changes a redis-server or a sentinel.
var ReadMethods = []string{MethodReplication, MethodSentinelMaster, MethodSentinelMasters, MethodSentinelCKQuorum, MethodSentinelReplicas}

// CommandsPerCall is how many Redis commands one call of a method sends
// when every command succeeds, as GoRedisDialer implements it. ConfigSet,
// SentinelSet and SentinelConfigSet send one more (ConfigSet) or exactly
// one (SentinelSet, SentinelConfigSet) command per setting; the table holds
// their fixed part. Connection setup (AUTH on a new pooled connection) is
// not counted.
var CommandsPerCall = map[string]int{
	MethodReplication:       1, // INFO replication memory
	MethodReplicaOf:         2, // REPLICAOF + CONFIG REWRITE
	MethodConfigSet:         1, // CONFIG SET per setting + CONFIG REWRITE
	MethodSetUser:           2, // ACL SETUSER + CONFIG REWRITE
	MethodPauseWrites:       1, // CLIENT PAUSE WRITE
	MethodResumeWrites:      1, // CLIENT UNPAUSE
	MethodSentinelMaster:    1,
	MethodSentinelMasters:   1,
	MethodSentinelCKQuorum:  1,
	MethodSentinelMonitor:   1,
	MethodSentinelRemove:    1,
	MethodSentinelSet:       0, // SENTINEL SET per setting
	MethodSentinelReset:     1,
	MethodSentinelFailover:  1,
	MethodSentinelReplicas:  1,
	MethodSentinelSetUser:   2, // ACL SETUSER + SENTINEL FLUSHCONFIG
	MethodSentinelConfigSet: 0, // SENTINEL CONFIG SET per setting
}

// Counts are a CountingDialer's counters.
type Counts struct {
	// Calls are Admin method calls per method (failed calls count).
	Calls map[string]int64
	// Commands are the Redis commands those calls sent (CommandsPerCall).
	Commands int64
	// ReadCommands and WriteCommands split Commands by ReadMethods.
	ReadCommands, WriteCommands int64
}

// CountingDialer wraps a Dialer and counts every Admin call of every Admin
// it hands out, and the Redis commands those calls send. It is for
// benchmarks and tests. Safe for concurrent use.
type CountingDialer struct {
	inner Dialer

	mu     sync.Mutex
	counts Counts
}

var _ Dialer = (*CountingDialer)(nil)

// Counting returns a CountingDialer around inner.
func Counting(inner Dialer) *CountingDialer {
	return &CountingDialer{inner: inner, counts: Counts{Calls: map[string]int64{}}}
}

// Admin implements Dialer.
func (d *CountingDialer) Admin(owner string, creds Credentials) Admin {
	return &countingAdmin{inner: d.inner.Admin(owner, creds), d: d}
}

// Forget implements Dialer.
func (d *CountingDialer) Forget(owner string) { d.inner.Forget(owner) }

// Counts returns a copy of the counters.
func (d *CountingDialer) Counts() Counts {
	d.mu.Lock()
	defer d.mu.Unlock()
	c := d.counts
	c.Calls = maps.Clone(d.counts.Calls)
	return c
}

// Reset zeroes the counters.
func (d *CountingDialer) Reset() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.counts = Counts{Calls: map[string]int64{}}
}

// count records one call of method with extra per-setting commands.
func (d *CountingDialer) count(method string, settings int) {
	n := int64(CommandsPerCall[method] + settings)
	read := false
	for _, m := range ReadMethods {
		read = read || m == method
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.counts.Calls[method]++
	d.counts.Commands += n
	if read {
		d.counts.ReadCommands += n
	} else {
		d.counts.WriteCommands += n
	}
}

type countingAdmin struct {
	inner Admin
	d     *CountingDialer
}

var _ Admin = (*countingAdmin)(nil)

func (a *countingAdmin) Replication(ctx context.Context, server endpoint.Endpoint) (Replication, error) {
	a.d.count(MethodReplication, 0)
	return a.inner.Replication(ctx, server)
}

func (a *countingAdmin) ReplicaOf(ctx context.Context, server, master endpoint.Endpoint) error {
	a.d.count(MethodReplicaOf, 0)
	return a.inner.ReplicaOf(ctx, server, master)
}

func (a *countingAdmin) ConfigSet(ctx context.Context, server endpoint.Endpoint, settings map[string]string) error {
	a.d.count(MethodConfigSet, len(settings))
	return a.inner.ConfigSet(ctx, server, settings)
}

func (a *countingAdmin) SetUser(ctx context.Context, server endpoint.Endpoint, u acl.User) error {
	a.d.count(MethodSetUser, 0)
	return a.inner.SetUser(ctx, server, u)
}

func (a *countingAdmin) PauseWrites(ctx context.Context, server endpoint.Endpoint, d time.Duration) error {
	a.d.count(MethodPauseWrites, 0)
	return a.inner.PauseWrites(ctx, server, d)
}

func (a *countingAdmin) ResumeWrites(ctx context.Context, server endpoint.Endpoint) error {
	a.d.count(MethodResumeWrites, 0)
	return a.inner.ResumeWrites(ctx, server)
}

func (a *countingAdmin) SentinelMasters(ctx context.Context, sentinel endpoint.Endpoint) (map[string]MasterState, error) {
	a.d.count(MethodSentinelMasters, 0)
	return a.inner.SentinelMasters(ctx, sentinel)
}

func (a *countingAdmin) SentinelMaster(ctx context.Context, sentinel endpoint.Endpoint, name string) (MasterState, error) {
	a.d.count(MethodSentinelMaster, 0)
	return a.inner.SentinelMaster(ctx, sentinel, name)
}

func (a *countingAdmin) SentinelCKQuorum(ctx context.Context, sentinel endpoint.Endpoint, name string) error {
	a.d.count(MethodSentinelCKQuorum, 0)
	return a.inner.SentinelCKQuorum(ctx, sentinel, name)
}

func (a *countingAdmin) SentinelMonitor(ctx context.Context, sentinel endpoint.Endpoint, name string, master endpoint.Endpoint, quorum int) error {
	a.d.count(MethodSentinelMonitor, 0)
	return a.inner.SentinelMonitor(ctx, sentinel, name, master, quorum)
}

func (a *countingAdmin) SentinelRemove(ctx context.Context, sentinel endpoint.Endpoint, name string) error {
	a.d.count(MethodSentinelRemove, 0)
	return a.inner.SentinelRemove(ctx, sentinel, name)
}

func (a *countingAdmin) SentinelSet(ctx context.Context, sentinel endpoint.Endpoint, name string, settings map[string]string) error {
	a.d.count(MethodSentinelSet, len(settings))
	return a.inner.SentinelSet(ctx, sentinel, name, settings)
}

func (a *countingAdmin) SentinelReset(ctx context.Context, sentinel endpoint.Endpoint, name string) error {
	a.d.count(MethodSentinelReset, 0)
	return a.inner.SentinelReset(ctx, sentinel, name)
}

func (a *countingAdmin) SentinelFailover(ctx context.Context, sentinel endpoint.Endpoint, name string) error {
	a.d.count(MethodSentinelFailover, 0)
	return a.inner.SentinelFailover(ctx, sentinel, name)
}

func (a *countingAdmin) SentinelSetUser(ctx context.Context, sentinel endpoint.Endpoint, u acl.User) error {
	a.d.count(MethodSentinelSetUser, 0)
	return a.inner.SentinelSetUser(ctx, sentinel, u)
}

func (a *countingAdmin) SentinelConfigSet(ctx context.Context, sentinel endpoint.Endpoint, settings map[string]string) error {
	a.d.count(MethodSentinelConfigSet, len(settings))
	return a.inner.SentinelConfigSet(ctx, sentinel, settings)
}

func (a *countingAdmin) SentinelReplicas(ctx context.Context, sentinel endpoint.Endpoint, name string) ([]ReplicaState, error) {
	a.d.count(MethodSentinelReplicas, 0)
	return a.inner.SentinelReplicas(ctx, sentinel, name)
}
