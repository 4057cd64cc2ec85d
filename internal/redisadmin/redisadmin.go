// Package redisadmin is the operator's narrow view of redis-server and
// redis-sentinel: the few administrative commands the controller needs, each
// answered in typed form. The real implementation uses go-redis; tests and
// the scale benchmark use a fake.
package redisadmin

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/incusops/redis-sentinel-operator/internal/acl"
	"github.com/incusops/redis-sentinel-operator/internal/certs"
	"github.com/incusops/redis-sentinel-operator/internal/endpoint"
)

// ErrNoSuchMaster is returned when a sentinel does not monitor the name.
var ErrNoSuchMaster = errors.New("sentinel does not monitor this master name")

// Replication is a redis-server's INFO replication (and memory) answer.
type Replication struct {
	// Role is "master" or "slave", as Redis says.
	Role string
	// Master is a replica's master (zero for a master).
	Master endpoint.Endpoint
	// LinkUp is a replica's master_link_status == up.
	LinkUp bool
	// Offset is master_repl_offset for a master, slave_repl_offset (or
	// slave_read_repl_offset) for a replica.
	Offset int64
	// ConnectedReplicas is a master's connected_slaves.
	ConnectedReplicas int
	// UsedMemory and Maxmemory are bytes (Maxmemory 0 means no limit).
	UsedMemory, Maxmemory int64
	// Priority is a replica's replica-priority (slave_priority): Sentinel
	// promotes the lowest non-zero one, never a 0.
	Priority int
}

// IsMaster reports whether the server acts as a master.
func (r Replication) IsMaster() bool { return r.Role == "master" }

// MasterState is a sentinel's SENTINEL MASTER answer.
type MasterState struct {
	Address           endpoint.Endpoint
	Flags             []string
	Quorum            int
	DownAfterMs       int
	FailoverTimeoutMs int
	ParallelSyncs     int
	NumReplicas       int
	NumOtherSentinels int
	ConfigEpoch       int64
	// RoleReportedAgo is how long ago the master reported its role to the
	// sentinel (role-reported-time): after a switch, about when the new
	// master took over.
	RoleReportedAgo time.Duration
}

// HasFlag reports whether the sentinel set a flag on the master, e.g.
// "s_down", "o_down", "failover_in_progress".
func (m MasterState) HasFlag(flag string) bool {
	for _, f := range m.Flags {
		if f == flag {
			return true
		}
	}
	return false
}

// FailoverInProgress reports whether the sentinel is driving a failover.
func (m MasterState) FailoverInProgress() bool {
	for _, f := range m.Flags {
		if strings.HasPrefix(f, "failover_") {
			return true
		}
	}
	return false
}

// ReplicaState is one replica in a sentinel's SENTINEL REPLICAS answer: the
// sentinel's own view, refreshed from the replica's INFO about every 10 s.
type ReplicaState struct {
	Address endpoint.Endpoint
	// Priority is the replica-priority the sentinel last read.
	Priority int
	Flags    []string
}

// Credentials are the ACL user the operator administers a formation's
// redis-servers and sentinels with (acl.AdminUser on both).
type Credentials struct {
	Username string
	Password string
	// TLS is the formation's TLS material; zero when TLS is off.
	TLS TLSMaterial
}

// TLSMaterial is what the operator dials a TLS formation with, in PEM:
// the CA(s) the members' certificates are checked against, and the client
// certificate and key presented when the members require one. Strings, so
// that Credentials stay comparable (the Sentinel watcher restarts its
// subscriptions when they change).
type TLSMaterial struct {
	CA, Cert, Key string
}

// Config is the TLS configuration to dial with, nil when TLS is off.
// Material that does not parse (observe checks it before handing it out)
// gives a configuration that fails every handshake with the reason: the
// operator never falls back to plaintext.
func (m TLSMaterial) Config() *tls.Config {
	if m == (TLSMaterial{}) {
		return nil
	}
	cfg, err := certs.ClientConfig([]byte(m.CA), []byte(m.Cert), []byte(m.Key))
	if err != nil {
		return &tls.Config{MinVersion: tls.VersionTLS12, VerifyConnection: func(tls.ConnectionState) error {
			return fmt.Errorf("the formation's TLS material is unusable: %w", err)
		}}
	}
	return cfg
}

// Admin runs administrative commands against one formation's servers.
type Admin interface {
	// Replication reads INFO replication and memory from a redis-server.
	Replication(ctx context.Context, server endpoint.Endpoint) (Replication, error)
	// ReplicaOf points a redis-server at a master; a zero master promotes
	// it (REPLICAOF NO ONE). The change is persisted with CONFIG REWRITE.
	ReplicaOf(ctx context.Context, server, master endpoint.Endpoint) error
	// ConfigSet applies settings at run time and persists them with
	// CONFIG REWRITE.
	ConfigSet(ctx context.Context, server endpoint.Endpoint, settings map[string]string) error
	// SetUser makes an ACL user on a redis-server exactly u (ACL SETUSER
	// with u.SetUserArgs(), atomic), persisted with CONFIG REWRITE. A user
	// with no passwords and no rules is disabled.
	SetUser(ctx context.Context, server endpoint.Endpoint, u acl.User) error
	// PauseWrites holds write commands on a redis-server for d (CLIENT
	// PAUSE WRITE): clients wait instead of writing and replication stops
	// advancing, so replicas can catch up exactly. ResumeWrites ends it.
	PauseWrites(ctx context.Context, server endpoint.Endpoint, d time.Duration) error
	ResumeWrites(ctx context.Context, server endpoint.Endpoint) error

	// Sentinel* talk to a redis-sentinel.
	SentinelMaster(ctx context.Context, sentinel endpoint.Endpoint, name string) (MasterState, error)
	// SentinelMasters is every master the sentinel monitors, by name
	// (SENTINEL MASTERS).
	SentinelMasters(ctx context.Context, sentinel endpoint.Endpoint) (map[string]MasterState, error)
	SentinelCKQuorum(ctx context.Context, sentinel endpoint.Endpoint, name string) error
	SentinelMonitor(ctx context.Context, sentinel endpoint.Endpoint, name string, master endpoint.Endpoint, quorum int) error
	SentinelRemove(ctx context.Context, sentinel endpoint.Endpoint, name string) error
	SentinelSet(ctx context.Context, sentinel endpoint.Endpoint, name string, settings map[string]string) error
	SentinelReset(ctx context.Context, sentinel endpoint.Endpoint, name string) error
	SentinelFailover(ctx context.Context, sentinel endpoint.Endpoint, name string) error
	// SentinelReplicas is the sentinel's view of the master's replicas
	// (SENTINEL REPLICAS).
	SentinelReplicas(ctx context.Context, sentinel endpoint.Endpoint, name string) ([]ReplicaState, error)
	// SentinelSetUser is SetUser on a sentinel, persisted with SENTINEL
	// FLUSHCONFIG.
	SentinelSetUser(ctx context.Context, sentinel endpoint.Endpoint, u acl.User) error
	// SentinelConfigSet applies sentinel-wide settings (SENTINEL CONFIG
	// SET, e.g. sentinel-pass), which Sentinel persists itself.
	SentinelConfigSet(ctx context.Context, sentinel endpoint.Endpoint, settings map[string]string) error
}

// Dialer gives an Admin for a formation's credentials. Connections are
// kept per formation (owner) so that a deleted formation's are closed.
type Dialer interface {
	// Admin returns an Admin for the formation owner using creds.
	Admin(owner string, creds Credentials) Admin
	// Forget closes the connections kept for owner.
	Forget(owner string)
}
