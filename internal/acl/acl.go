// Package acl says who may do what on a formation's redis-servers and
// sentinels: one Redis ACL user per role, each allowed only what the role
// needs, and the passwords each user accepts. It is pure data; the renderers
// write the users into the bootstrap configuration and the admin client
// applies them to running servers with ACL SETUSER.
package acl

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"

	"github.com/incusops/redis-sentinel-operator/internal/engine"
)

// Credential names one password of a formation.
type Credential string

const (
	// BackendPassword is the backend user's password on the redis-servers (the
	// user's passwordSecretRef).
	BackendPassword Credential = "backend"
	// BackendSentinelPassword is the backend user's password on the sentinels,
	// for discovery only (the user's sentinelPasswordSecretRef).
	BackendSentinelPassword Credential = "backend-sentinel"
	// Admin is the operator's own user, on redis-servers and sentinels.
	Admin Credential = "admin"
	// Replication is what replicas authenticate to their master with
	// (masteruser/masterauth).
	Replication Credential = "replication"
	// Monitoring is what sentinels authenticate to the redis-servers with
	// (sentinel auth-user/auth-pass).
	Monitoring Credential = "monitoring"
	// Peer is what sentinels authenticate to each other with (sentinel
	// sentinel-user/sentinel-pass).
	Peer Credential = "peer"
)

// Internal are the credentials the operator generates and keeps in a
// Secret it owns; the backend ones come from the user's Secrets.
var Internal = []Credential{Admin, Replication, Monitoring, Peer}

// All is every credential, in the order rotations apply them.
var All = append([]Credential{BackendPassword, BackendSentinelPassword}, Internal...)

// Usernames of the internal users. The backend user's name is the spec's.
const (
	AdminUser       = "rsf-admin"
	ReplicationUser = "rsf-replication"
	MonitoringUser  = "rsf-sentinel"
	PeerUser        = "rsf-peer"
	DefaultUser     = "default"
)

// DefaultBackendUser is the backend user's name when the spec names none.
const DefaultBackendUser = "backend"

// Passwords is one credential now: Current, and during a rotation's grace
// period the Previous one, which is still accepted.
type Passwords struct {
	Current, Previous string
}

// Accepted are the passwords a user with this credential accepts.
func (p Passwords) Accepted() []string {
	if p.Previous == "" || p.Previous == p.Current {
		return []string{p.Current}
	}
	return []string{p.Current, p.Previous}
}

// Set is every credential of a formation.
type Set map[Credential]Passwords

// Rotating are the credentials whose previous password is still accepted.
func (s Set) Rotating() []string {
	var names []string
	for _, c := range All {
		if s[c].Previous != "" {
			names = append(names, string(c))
		}
	}
	return names
}

// User is one ACL user: the passwords it accepts and its rules (key,
// channel and command rules; never on/off or password rules, which User
// adds itself).
type User struct {
	Name      string
	Passwords []string
	Rules     []string
}

// SetUserArgs are the arguments of ACL SETUSER that make the user exactly
// this, atomically (Redis 7 applies all rules or none): reset, on (off for
// a user without passwords), the passwords, the rules.
func (u User) SetUserArgs() []string {
	args := []string{u.Name, "reset", "off"}
	if len(u.Passwords) > 0 {
		args[2] = "on"
	}
	for _, p := range u.Passwords {
		args = append(args, ">"+p)
	}
	return append(args, u.Rules...)
}

// Hashes are the users' passwords as ACL stores them (SHA-256, hex), for
// config files that must not hold them in clear text.
func (u User) Hashes() []string {
	hashes := make([]string, len(u.Passwords))
	for i, p := range u.Passwords {
		sum := sha256.Sum256([]byte(p))
		hashes[i] = hex.EncodeToString(sum[:])
	}
	return hashes
}

// Rule sets. Each is the least a role needs; see docs/security.md.
var (
	// adminRules: the operator administers everything.
	adminRules = []string{"~*", "&*", "+@all"}
	// replicationRules: what a replica sends its master (Redis ACL docs).
	replicationRules = []string{"-@all", "+psync", "+replconf", "+ping"}
	// monitoringRules: what a sentinel sends a redis-server (Redis
	// Sentinel docs, "Redis Access Control List authentication").
	monitoringRules = []string{"allchannels", "-@all", "+multi", "+slaveof", "+ping", "+exec", "+subscribe",
		"+config|rewrite", "+role", "+publish", "+info", "+client|setname", "+client|kill", "+script|kill"}
	// peerRules: what a sentinel sends another (hello messages, votes).
	peerRules = []string{"-@all", "+ping", "+publish", "+client|setname", "+sentinel|is-master-down-by-addr", "&__sentinel__:hello"}
	// sentinelAdminRules: the operator on a sentinel (no keys there).
	sentinelAdminRules = []string{"&*", "+@all"}
	// DefaultBackendRules: every key and channel and every command except
	// the administrative and dangerous ones (CONFIG, REPLICAOF, SHUTDOWN,
	// ACL, DEBUG, MONITOR, FLUSHALL, KEYS, ...).
	DefaultBackendRules = []string{"~*", "&*", "+@all", "-@admin", "-@dangerous"}
)

// NoRules allow nothing: the backend's rules until the spec's were applied.
var NoRules = []string{"resetkeys", "resetchannels", "-@all"}

// Backend is the backend user: its name and its rules on redis-servers.
type Backend struct {
	Name  string
	Rules []string
}

// ServerUsers are the users of every redis-server. The default user is
// disabled.
func ServerUsers(creds Set, backend Backend) []User {
	return []User{
		{Name: DefaultUser},
		{Name: AdminUser, Passwords: creds[Admin].Accepted(), Rules: slices.Clone(adminRules)},
		{Name: ReplicationUser, Passwords: creds[Replication].Accepted(), Rules: slices.Clone(replicationRules)},
		{Name: MonitoringUser, Passwords: creds[Monitoring].Accepted(), Rules: slices.Clone(monitoringRules)},
		BackendUser(creds, backend),
	}
}

// BackendUser is the backend user of the redis-servers.
func BackendUser(creds Set, backend Backend) User {
	return User{Name: backend.Name, Passwords: creds[BackendPassword].Accepted(), Rules: slices.Clone(backend.Rules)}
}

// SentinelUsers are the users of a sentinel of engine e (the zero Engine
// is Redis): the backend user there may only discover the master
// (DiscoveryRulesOf). The default user is disabled.
func SentinelUsers(creds Set, backend Backend, e engine.Engine) []User {
	return []User{
		{Name: DefaultUser},
		{Name: AdminUser, Passwords: creds[Admin].Accepted(), Rules: slices.Clone(sentinelAdminRules)},
		{Name: PeerUser, Passwords: creds[Peer].Accepted(), Rules: slices.Clone(peerRules)},
		{Name: backend.Name, Passwords: creds[BackendSentinelPassword].Accepted(), Rules: DiscoveryRulesOf(e)},
	}
}
