package acl

import (
	"slices"

	"github.com/incusops/redis-sentinel-operator/internal/engine"
)

// DiscoveryRules are what a backend's Sentinel client may do on a sentinel:
// find the master and the replicas, and hear of switches; nothing that
// changes what the sentinels monitor or how (SENTINEL SET, REMOVE, MONITOR,
// FAILOVER, RESET, CONFIG, ...), no vote (SENTINEL IS-MASTER-DOWN-BY-ADDR),
// no PUBLISH (a forged hello or +switch-master), no ACL, CLIENT KILL, INFO
// or SHUTDOWN, and no channel but the two switch channels.
//
// They are exactly what DiscoveryClients send, as recorded from the real
// libraries against Sentinel 7.0.15 by TestDiscoveryClients (through a proxy
// in front of each sentinel, a SENTINEL FAILOVER included):
//
//	+ping                              go-redis: health check of its pub/sub
//	                                   connection, after 3 s without a message
//	+sentinel|get-master-addr-by-name  go-redis: the master's address, asked of
//	                                   every sentinel at first, then of the
//	                                   one that answered, at every new dial
//	+sentinel|sentinels                go-redis: the other sentinels, added to
//	                                   its list
//	+sentinel|replicas                 go-redis with ReplicaOnly (or another
//	                                   replica-routing option): the replicas
//	+sentinel|masters                  redis-py: discover_master reads the
//	                                   master from SENTINEL MASTERS (every
//	                                   monitored master and its state), not
//	                                   from get-master-addr-by-name
//	+sentinel|slaves                   redis-py: discover_slaves
//	+client|setname                    redis-py with client_name in its
//	                                   sentinel_kwargs (go-redis names its
//	                                   connection inside HELLO)
//	+subscribe &+switch-master &+replica-reconf-done
//	                                   go-redis: one subscription, on the
//	                                   sentinel that answered first; it
//	                                   follows a failover on +switch-master
//
// Sent but deliberately absent:
//   - AUTH and HELLO (go-redis: HELLO 3 AUTH user pass; redis-py: AUTH user
//     pass) carry the no-auth flag: ACL never checks them, a rule for them
//     changes nothing.
//   - CLIENT SETINFO (go-redis, LIB-NAME and LIB-VER, unless
//     DisableIdentity): Redis 7.0 does not know it, answers "unknown
//     subcommand" before any ACL check, go-redis ignores the error, and ACL
//     SETUSER refuses +client|setinfo on 7.0. A sentinel that knows it
//     (Valkey 8, as Redis 7.2) checks it: DiscoveryRulesOf allows it there,
//     or every go-redis connection would log an ACL denial (go-redis
//     ignores the NOPERM itself).
//
// redis-py 4.3.4 subscribes to nothing: it asks SENTINEL MASTERS again
// whenever it opens a connection, which it does when the old master, demoted
// by the sentinels, kills its clients (CLIENT KILL TYPE normal) or answers
// READONLY. Sentinel 7.0 enforces channel rules (SUBSCRIBE to another
// channel is refused with NOPERM, and acl-pubsub-default is resetchannels).
var DiscoveryRules = []string{"-@all",
	"+ping",
	"+sentinel|get-master-addr-by-name", "+sentinel|sentinels", "+sentinel|replicas",
	"+sentinel|masters", "+sentinel|slaves",
	"+client|setname",
	"+subscribe", "&+switch-master", "&+replica-reconf-done",
}

// DiscoveryRulesOf are the backend user's rules on a sentinel of engine e
// (the zero Engine is Redis): DiscoveryRules, and +client|setinfo where
// the sentinel knows CLIENT SETINFO (engine.Engine.ClientSetInfo), which
// only sets the connection's library name and version. A fresh slice.
func DiscoveryRulesOf(e engine.Engine) []string {
	rules := slices.Clone(DiscoveryRules)
	if e.ClientSetInfo {
		rules = append(rules, "+client|setinfo")
	}
	return rules
}

// DiscoveryClient is a Sentinel client library, used as a backend uses it,
// and what it sends a sentinel as the backend user.
type DiscoveryClient struct {
	// Name names the library, its version and how it is used.
	Name string
	// Commands are the commands it sends a sentinel, by their ACL names
	// (a subcommand as "sentinel|masters"), sorted.
	Commands []string
	// Channels are what it subscribes to on a sentinel, sorted.
	Channels []string
}

// DiscoveryClients are the supported clients; TestDiscoveryClients fails
// when one of them sends anything else (after an upgrade, say).
var DiscoveryClients = []DiscoveryClient{
	{
		// internal/redisclient: master discovery, SET/GET, a failover.
		Name: "go-redis v9.19.0 FailoverClient",
		Commands: []string{"client|setinfo", "hello", "ping", "sentinel|get-master-addr-by-name",
			"sentinel|sentinels", "subscribe"},
		Channels: []string{"+replica-reconf-done", "+switch-master"},
	},
	{
		// Reads from replicas: FailoverOptions.ReplicaOnly.
		Name:     "go-redis v9.19.0 FailoverClient, ReplicaOnly",
		Commands: []string{"client|setinfo", "hello", "ping", "sentinel|replicas", "sentinel|sentinels", "subscribe"},
		Channels: []string{"+replica-reconf-done", "+switch-master"},
	},
	{
		// Sentinel(..., sentinel_kwargs={username, password, client_name}):
		// master_for, discover_master, discover_slaves, SET/GET, a failover.
		Name:     "redis-py 4.3.4 Sentinel",
		Commands: []string{"auth", "client|setname", "sentinel|masters", "sentinel|slaves"},
	},
}
