package render

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/incusops/redis-sentinel-operator/internal/acl"
	"github.com/incusops/redis-sentinel-operator/internal/endpoint"
	"github.com/incusops/redis-sentinel-operator/internal/engine"
)

const loopbackAddress = "127.0.0.1"

// Redis is the input for one member's redis.conf.
type Redis struct {
	Address string // member IP literal; bind <Address> 127.0.0.1 (loopback kept so in-container redis-cli works)
	Port    int
	// Users are the ACL users (acl.ServerUsers), written as `user` lines
	// with their passwords' SHA-256, never in clear text. The default user
	// is always written disabled; an entry for it must have no passwords
	// and no rules. There is no requirepass.
	Users []acl.User
	// MasterUser and MasterAuth are what the member logs in to its master
	// with as a replica (masteruser/masterauth: the replication user).
	// MasterAuth is the one password the file holds in clear text: Redis
	// must send it.
	MasterUser         string
	MasterAuth         string
	Maxmemory          string // Redis notation, e.g. "1gb"; "0" means no limit
	MaxmemoryPolicy    string // one of Redis's 8 policies
	AppendOnly         bool
	AppendFsync        string      // always|everysec|no
	SavePoints         []SavePoint // empty => `save ""` (RDB off)
	MinReplicasToWrite int
	MinReplicasMaxLag  int                // seconds
	ReplicaOf          *endpoint.Endpoint // nil: starts as master; else `replicaof host port`
	TLS                *TLS               // nil: plaintext on Port
	// Engine gives the Debian paths of the server (zero: Redis).
	Engine engine.Engine
}

// RedisConf renders redis.conf. On invalid input it returns a *FieldError
// naming the field; the error never contains a password.
func RedisConf(r Redis) ([]byte, error) {
	addr, err := ipLiteral("Address", r.Address)
	if err != nil {
		return nil, err
	}
	if err := port("Port", r.Port); err != nil {
		return nil, err
	}
	if err := validateUsers("Users", r.Users); err != nil {
		return nil, err
	}
	if err := userName("MasterUser", r.MasterUser); err != nil {
		return nil, err
	}
	if err := redisPassword("MasterAuth", r.MasterAuth); err != nil {
		return nil, err
	}
	if err := maxmemory("Maxmemory", r.Maxmemory); err != nil {
		return nil, err
	}
	if !maxmemoryPolicies[r.MaxmemoryPolicy] {
		return nil, fieldErr("MaxmemoryPolicy", "must be one of noeviction, allkeys-lru, allkeys-lfu, allkeys-random, volatile-lru, volatile-lfu, volatile-random, volatile-ttl; got %s", show(r.MaxmemoryPolicy))
	}
	if !appendFsyncModes[r.AppendFsync] {
		return nil, fieldErr("AppendFsync", "must be one of always, everysec, no; got %s", show(r.AppendFsync))
	}
	for i, sp := range r.SavePoints {
		if err := intRange(fmt.Sprintf("SavePoints[%d].Seconds", i), sp.Seconds, 1); err != nil {
			return nil, err
		}
		if err := intRange(fmt.Sprintf("SavePoints[%d].Changes", i), sp.Changes, 1); err != nil {
			return nil, err
		}
	}
	if err := intRange("MinReplicasToWrite", r.MinReplicasToWrite, 0); err != nil {
		return nil, err
	}
	if err := intRange("MinReplicasMaxLag", r.MinReplicasMaxLag, 0); err != nil {
		return nil, err
	}
	var replicaOf *endpoint.Endpoint
	if r.ReplicaOf != nil {
		host, err := ipLiteral("ReplicaOf.Host", r.ReplicaOf.Host)
		if err != nil {
			return nil, err
		}
		if err := port("ReplicaOf.Port", r.ReplicaOf.Port); err != nil {
			return nil, err
		}
		if host == addr && r.ReplicaOf.Port == r.Port {
			return nil, fieldErr("ReplicaOf", "must not point at the member itself (%s port %d)", host, r.Port)
		}
		replicaOf = &endpoint.Endpoint{Host: host, Port: r.ReplicaOf.Port}
	}

	var c conf
	c.comment(
		"Rendered by redis-sentinel-operator. Do not edit by hand.",
		"Runtime changes go through CONFIG SET followed by CONFIG REWRITE;",
		"the operator re-renders this file only when it (re)creates the member.",
		"--supervised systemd --daemonize no come from Debian's unit.",
	)
	c.blank()

	c.comment("Network")
	c.directive("bind", bindArgs(addr)...)
	c.listen(r.Port, r.TLS)
	c.directive("protected-mode", kw("yes"))
	c.directive("tcp-keepalive", num(60))
	c.blank()

	c.comment("Process (Debian paths)")
	c.directive("daemonize", kw("no"))
	e := engine.Lookup(r.Engine.Name)
	c.directive("pidfile", str(e.ServerPid))
	c.directive("logfile", str(e.ServerLog))
	c.directive("dir", str(e.DataDir))
	c.blank()

	c.comment(
		"Authentication: one ACL user per role, passwords as SHA-256 only.",
		"The default user is disabled and has no password, so protected-mode",
		"(which needs a password-less default user) never applies.",
	)
	c.users(r.Users)
	c.comment("As a replica, log in to the master as the replication user.")
	c.directive("masteruser", str(r.MasterUser))
	c.directive("masterauth", str(r.MasterAuth))
	c.blank()

	c.comment("Memory")
	c.directive("maxmemory", str(r.Maxmemory))
	c.directive("maxmemory-policy", str(r.MaxmemoryPolicy))
	c.blank()

	c.comment("Persistence")
	c.directive("appendonly", yesNo(r.AppendOnly))
	c.directive("appendfsync", str(r.AppendFsync))
	c.directive("appendfilename", str("appendonly.aof"))
	c.directive("appenddirname", str("appendonlydir"))
	c.directive("save", saveArgs(r.SavePoints)...)
	c.directive("dbfilename", str("dump.rdb"))
	c.blank()

	c.comment("Replication")
	c.directive("replica-announce-ip", str(addr))
	c.directive("replica-announce-port", num(r.Port))
	c.directive("min-replicas-to-write", num(r.MinReplicasToWrite))
	c.directive("min-replicas-max-lag", num(r.MinReplicasMaxLag))
	c.directive("replica-serve-stale-data", kw("yes"))
	c.directive("replica-read-only", kw("yes"))
	c.directive("repl-diskless-sync", kw("yes"))
	// Start a full sync at once instead of waiting 5 s for more replicas:
	// after a failover a master refuses writes (min-replicas-to-write)
	// until a replica is linked again.
	c.directive("repl-diskless-sync-delay", num(0))
	c.directive("replica-priority", num(100))
	if replicaOf != nil {
		c.directive("replicaof", str(replicaOf.Host), num(replicaOf.Port))
	}
	return c.bytes(), nil
}

// bindArgs binds the member address plus loopback, once: Redis fails to
// start when the same address is bound twice.
func bindArgs(addr string) []token {
	if addr == loopbackAddress {
		return []token{str(addr)}
	}
	return []token{str(addr), str(loopbackAddress)}
}

// saveArgs puts every save point on one line ("save 3600 1 300 100"); an
// empty list is `save ""`, which disables RDB snapshots.
func saveArgs(points []SavePoint) []token {
	if len(points) == 0 {
		return []token{str("")}
	}
	args := make([]token, 0, 2*len(points))
	for _, sp := range points {
		args = append(args, num(sp.Seconds), num(sp.Changes))
	}
	return args
}

// RuntimeSettings are the redis.conf settings a running redis-server takes
// with CONFIG SET, as parameter -> value, from the same input as RedisConf:
// a spec change is applied live with exactly the values a fresh member gets.
func RuntimeSettings(r Redis) (map[string]string, error) {
	if _, err := RedisConf(r); err != nil {
		return nil, err
	}
	save := make([]string, 0, 2*len(r.SavePoints))
	for _, p := range r.SavePoints {
		save = append(save, strconv.Itoa(p.Seconds), strconv.Itoa(p.Changes))
	}
	yesNo := map[bool]string{true: "yes", false: "no"}
	return map[string]string{
		"maxmemory":                r.Maxmemory,
		"maxmemory-policy":         r.MaxmemoryPolicy,
		"appendonly":               yesNo[r.AppendOnly],
		"appendfsync":              r.AppendFsync,
		"save":                     strings.Join(save, " "),
		"min-replicas-to-write":    strconv.Itoa(r.MinReplicasToWrite),
		"min-replicas-max-lag":     strconv.Itoa(r.MinReplicasMaxLag),
		"repl-diskless-sync-delay": "0",
	}, nil
}
