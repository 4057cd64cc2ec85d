package render

import (
	"fmt"

	"github.com/incusops/redis-sentinel-operator/internal/acl"
	"github.com/incusops/redis-sentinel-operator/internal/endpoint"
	"github.com/incusops/redis-sentinel-operator/internal/engine"
)

// Sentinel is the input for one member's sentinel.conf.
type Sentinel struct {
	Address string // member IP literal: bind + `sentinel announce-ip`
	Port    int
	// Users are the sentinel's ACL users (acl.SentinelUsers), as in
	// Redis.Users: SHA-256 only, the default user disabled, no requirepass.
	Users []acl.User
	// PeerUser and PeerPassword are what this sentinel logs in to the
	// other sentinels with (`sentinel sentinel-user` / `sentinel-pass`).
	PeerUser, PeerPassword string
	MasterName             string
	Master                 endpoint.Endpoint
	Quorum                 int
	DownAfterMs            int
	FailoverTimeoutMs      int
	ParallelSyncs          int
	// AuthUser and AuthPass are what the sentinel logs in to the
	// redis-servers with (`sentinel auth-user <master> <user>` /
	// `sentinel auth-pass <master> <pw>`).
	AuthUser, AuthPass string
	// KnownReplicas are listed as `sentinel known-replica` so that Sentinel
	// monitors them from the start instead of from its next INFO of the
	// master (every 10 s).
	KnownReplicas []endpoint.Endpoint
	// ID is the sentinel's run ID (`sentinel myid`, 40 hex digits): fixed
	// by the operator so that the other members' sentinels can know it
	// before it first runs. "" lets Sentinel draw one.
	ID string
	// KnownSentinels are the other members' sentinels, listed as
	// `sentinel known-sentinel` so that this one counts them towards its
	// quorum from its start instead of from their first hello (every 2 s).
	KnownSentinels []KnownSentinel
	// TLS, when set, makes the sentinel TLS-only, also towards the
	// redis-servers and the other sentinels (nil: plaintext on Port).
	TLS *TLS
	// Engine gives the Debian paths of the sentinel (zero: Redis).
	Engine engine.Engine
}

// KnownSentinel is another sentinel of the formation: where it listens
// and its run ID.
type KnownSentinel struct {
	Address endpoint.Endpoint
	ID      string
}

// SentinelConf renders the bootstrap sentinel.conf. Sentinel owns the file
// afterwards (it rewrites it to persist epochs, replicas and peers), so it is
// written once, when the member is created.
//
// PeerPassword and AuthPass must be printable ASCII without spaces or
// quotes, because Sentinel 7.0 rewrites `sentinel sentinel-pass` and
// `sentinel auth-pass` without quoting them (user names and rules are
// restricted for the same reason). On invalid input it returns a
// *FieldError naming the field; the error never contains a password.
func SentinelConf(s Sentinel) ([]byte, error) {
	addr, err := ipLiteral("Address", s.Address)
	if err != nil {
		return nil, err
	}
	if err := port("Port", s.Port); err != nil {
		return nil, err
	}
	if err := validateUsers("Users", s.Users); err != nil {
		return nil, err
	}
	if err := userName("PeerUser", s.PeerUser); err != nil {
		return nil, err
	}
	if err := sentinelPassword("PeerPassword", s.PeerPassword); err != nil {
		return nil, err
	}
	if err := masterName("MasterName", s.MasterName); err != nil {
		return nil, err
	}
	masterHost, err := ipLiteral("Master.Host", s.Master.Host)
	if err != nil {
		return nil, err
	}
	if err := port("Master.Port", s.Master.Port); err != nil {
		return nil, err
	}
	if err := intRange("Quorum", s.Quorum, 1); err != nil {
		return nil, err
	}
	if err := intRange("DownAfterMs", s.DownAfterMs, 1); err != nil {
		return nil, err
	}
	if err := intRange("FailoverTimeoutMs", s.FailoverTimeoutMs, 1); err != nil {
		return nil, err
	}
	if err := intRange("ParallelSyncs", s.ParallelSyncs, 1); err != nil {
		return nil, err
	}
	if err := userName("AuthUser", s.AuthUser); err != nil {
		return nil, err
	}
	if err := sentinelPassword("AuthPass", s.AuthPass); err != nil {
		return nil, err
	}
	replicas := make([]string, len(s.KnownReplicas))
	for i, r := range s.KnownReplicas {
		field := fmt.Sprintf("KnownReplicas[%d]", i)
		if replicas[i], err = ipLiteral(field+".Host", r.Host); err != nil {
			return nil, err
		}
		if err := port(field+".Port", r.Port); err != nil {
			return nil, err
		}
	}
	if s.ID != "" {
		if err := runID("ID", s.ID); err != nil {
			return nil, err
		}
	}
	sentinels := make([]string, len(s.KnownSentinels))
	for i, k := range s.KnownSentinels {
		field := fmt.Sprintf("KnownSentinels[%d]", i)
		if sentinels[i], err = ipLiteral(field+".Address.Host", k.Address.Host); err != nil {
			return nil, err
		}
		if err := port(field+".Address.Port", k.Address.Port); err != nil {
			return nil, err
		}
		if err := runID(field+".ID", k.ID); err != nil {
			return nil, err
		}
	}

	name := str(s.MasterName)
	var c conf
	c.comment(
		"Rendered by redis-sentinel-operator at bootstrap only.",
		"Sentinel rewrites this file itself (epochs, known replicas and sentinels);",
		"runtime changes go through SENTINEL SET / SENTINEL CONFIG SET, never by editing it.",
		"--supervised systemd --daemonize no come from Debian's unit.",
	)
	c.blank()

	c.comment("Network")
	c.directive("bind", bindArgs(addr)...)
	c.listen(s.Port, s.TLS)
	c.comment(
		"protected-mode only refuses non-loopback clients when no address is bound",
		"and the default user is password-less (nopass). This file always binds",
		"explicitly and disables the default user with resetpass, so 'yes' never",
		"blocks peers or the operator on 7.0, and it fails closed should both ever",
		"be removed (Sentinel's default is 'no').",
	)
	c.directive("protected-mode", kw("yes"))
	c.blank()

	c.comment("Process (Debian paths)")
	c.directive("daemonize", kw("no"))
	e := engine.Lookup(s.Engine.Name)
	c.directive("pidfile", str(e.SentinelPid))
	c.directive("logfile", str(e.SentinelLog))
	c.directive("dir", str(e.DataDir))
	c.blank()

	c.comment(
		"Authentication: one ACL user per role, passwords as SHA-256 only;",
		"the default user is disabled. Peer sentinels log in as the peer user.",
	)
	c.users(s.Users)
	c.directive("sentinel", kw("sentinel-user"), str(s.PeerUser))
	c.directive("sentinel", kw("sentinel-pass"), str(s.PeerPassword))
	c.blank()

	c.comment("Identity and safety")
	if s.ID != "" {
		c.directive("sentinel", kw("myid"), str(s.ID))
	}
	c.directive("sentinel", kw("announce-ip"), str(addr))
	c.directive("sentinel", kw("announce-port"), num(s.Port))
	c.directive("sentinel", kw("resolve-hostnames"), kw("no"))
	c.directive("sentinel", kw("deny-scripts-reconfig"), kw("yes"))
	c.blank()

	c.comment("Monitored master: 'monitor' must precede the per-master options")
	c.directive("sentinel", kw("monitor"), name, str(masterHost), num(s.Master.Port), num(s.Quorum))
	c.directive("sentinel", kw("auth-user"), name, str(s.AuthUser))
	c.directive("sentinel", kw("auth-pass"), name, str(s.AuthPass))
	c.directive("sentinel", kw("down-after-milliseconds"), name, num(s.DownAfterMs))
	c.directive("sentinel", kw("failover-timeout"), name, num(s.FailoverTimeoutMs))
	c.directive("sentinel", kw("parallel-syncs"), name, num(s.ParallelSyncs))
	for i, r := range s.KnownReplicas {
		c.directive("sentinel", kw("known-replica"), name, str(replicas[i]), num(r.Port))
	}
	for i, k := range s.KnownSentinels {
		c.directive("sentinel", kw("known-sentinel"), name, str(sentinels[i]), num(k.Address.Port), str(k.ID))
	}
	return c.bytes(), nil
}
