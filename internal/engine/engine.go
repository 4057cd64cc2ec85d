// Package engine is everything that differs between the servers a formation
// can run: Redis 7 from Debian bookworm and Valkey 8 from bookworm-backports.
//
// Debian packages both the same way, so the differences are names: the
// systemd units, the configuration directory and files, the data, log and
// run paths, the system user and the image the lab builds. The protocol,
// the configuration directives, INFO's replication fields, ACL rules and
// Sentinel's commands and events are the same (Valkey 8 answers as Redis
// 7.2 to clients), so little else in the operator knows which engine runs.
// Two differences show on real servers (internal/render and internal/acl
// test both engines): Valkey 8 reads and sets masteruser and masterauth but
// CONFIG REWRITE writes them back under its own names (RewrittenAs), and it
// knows Redis 7.2's CLIENT SETINFO, which clients send on every connection,
// so its ACL checks that command (ClientSetInfo).
//
// Replication only goes one way: a Valkey 8 replica syncs from a Redis 7.0
// master, but Redis 7.0 cannot load Valkey 8's RDB (format version 11):
// every full sync fails and it retries at once, forever, with its link
// down (CanReplicateFrom). Only a partial resynchronization, which sends no
// RDB, gets through: a Redis master demoted right after a failover to a
// Valkey replica may continue on the history they share, link up, until
// its next full sync (internal/sentinel's TestMixedEngines shows both).
// Its copy is stale all the same: it is never promoted and is replaced.
package engine

import (
	"fmt"
	"strings"
)

// Name is an engine's name, as in spec.engine.
type Name string

const (
	Redis  Name = "redis"
	Valkey Name = "valkey"
)

// Engine is one engine's names and paths inside a member container.
type Engine struct {
	Name Name
	// ServerUnit and SentinelUnit are the systemd units; CLI is the
	// command-line client.
	ServerUnit, SentinelUnit, CLI string
	// User owns the configuration directory and the files in it: Sentinel
	// and CONFIG REWRITE rewrite their own files.
	User string
	// ConfDir holds ServerConf, SentinelConf and the operator's files:
	// the TLS material (the member's key and certificate chain share one
	// file, replaced atomically) and the marker of a configured member.
	ConfDir, ServerConf, SentinelConf    string
	TLSCAFile, TLSMemberFile, Configured string
	// DataDir, ServerLog, ServerPid, SentinelLog and SentinelPid are
	// Debian's paths, as its units expect them.
	DataDir, ServerLog, ServerPid, SentinelLog, SentinelPid string
	// DefaultImage is the lab image alias a formation of this engine is
	// created from when spec.incus.image is unset.
	DefaultImage string
	// ClientSetInfo: the server knows CLIENT SETINFO (Redis 7.2's, which
	// go-redis sends on every connection). Valkey 8 does, so its ACL
	// checks the command and its ACL SETUSER takes a rule for it; Debian's
	// Redis 7.0 does not, answers "unknown subcommand" before any ACL
	// check, and refuses such a rule.
	ClientSetInfo bool
	// generation orders engines for replication (CanReplicateFrom).
	generation int
}

var engines = map[Name]Engine{
	Redis:  debian(Redis, "rsf-redis7-bookworm-v1", 7, false),
	Valkey: debian(Valkey, "rsf-valkey8-bookworm-v1", 8, true),
}

// debian is the layout Debian gives both engines' packages.
func debian(n Name, image string, generation int, clientSetInfo bool) Engine {
	s := string(n)
	return Engine{
		Name:          n,
		ServerUnit:    s + "-server",
		SentinelUnit:  s + "-sentinel",
		CLI:           s + "-cli",
		User:          s,
		ConfDir:       "/etc/" + s,
		ServerConf:    "/etc/" + s + "/" + s + ".conf",
		SentinelConf:  "/etc/" + s + "/sentinel.conf",
		TLSCAFile:     "/etc/" + s + "/tls-ca.crt",
		TLSMemberFile: "/etc/" + s + "/tls-member.pem",
		Configured:    "/etc/" + s + "/rsf-configured",
		DataDir:       "/var/lib/" + s,
		ServerLog:     "/var/log/" + s + "/" + s + "-server.log",
		ServerPid:     "/run/" + s + "/" + s + "-server.pid",
		SentinelLog:   "/var/log/" + s + "/" + s + "-sentinel.log",
		SentinelPid:   "/run/sentinel/" + s + "-sentinel.pid",
		DefaultImage:  image,
		ClientSetInfo: clientSetInfo,
		generation:    generation,
	}
}

// Property is the key that names an engine on an Incus image (a property
// the lab's image role sets) and on a member's container (a config key the
// operator sets when it creates it).
const Property = "user.rsf.engine"

// Of returns the named engine; "" is Redis, what every formation ran before
// engines could be chosen.
func Of(n Name) (Engine, error) {
	if n == "" {
		n = Redis
	}
	e, ok := engines[n]
	if !ok {
		return Engine{}, fmt.Errorf("unknown engine %q (redis or valkey)", n)
	}
	return e, nil
}

// Lookup is the engine a name read back from a container names: Redis
// when it names none (a container built before engines existed) or one
// this program does not know (only a hand edit gives one).
func Lookup(n Name) Engine {
	if e, err := Of(n); err == nil {
		return e
	}
	return engines[Redis]
}

// MustOf is Of for names the API server already validated.
func MustOf(n Name) Engine {
	e, err := Of(n)
	if err != nil {
		panic(err)
	}
	return e
}

// CanReplicateFrom reports whether a replica running e can sync from a
// master running master: never from a newer engine, whose RDB it cannot
// load. Such a member holds a stale copy and must not be promoted.
func (e Engine) CanReplicateFrom(master Engine) bool {
	return e.generation >= master.generation
}

// rewrittenAs are the directives Valkey 8 reads (and takes in CONFIG
// GET/SET) under the name the renderer writes, but persists under its own
// with CONFIG REWRITE (its config.c aliases).
var rewrittenAs = map[Name]map[string]string{
	Valkey: {"masteruser": "primaryuser", "masterauth": "primaryauth"},
}

// RewrittenAs is the name under which the engine's CONFIG REWRITE persists
// directive: the same name, except masteruser and masterauth on Valkey
// (primaryuser, primaryauth). Whatever reads a member's rewritten
// redis.conf must look for this name.
func (e Engine) RewrittenAs(directive string) string {
	if n, ok := rewrittenAs[e.Name][directive]; ok {
		return n
	}
	return directive
}

// Chown is the shell command that hands paths to User.
func (e Engine) Chown(paths ...string) string {
	return "chown " + e.User + ":" + e.User + " " + strings.Join(paths, " ")
}
