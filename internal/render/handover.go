package render

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/incusops/redis-sentinel-operator/internal/engine"
)

// HandoverGate holds a master's clean stop (the container shut down by an
// evacuation of its Incus cluster member, a host shutdown, `incus stop`)
// until the operator has handed its role over with a planned failover:
// redis-server's ExecStop waits while the server still answers ROLE as the
// master, for at most Bound. A replica, a server that does not answer
// (already down, killed) or a password that no longer works lets the stop
// go on at once. After Bound the stop goes on anyway and the loss is
// Sentinel's (or the operator's fast path's) to handle, as for a crash.
type HandoverGate struct {
	Engine engine.Engine
	// Address and Port are where the member's redis-server listens (the
	// address its TLS certificate names).
	Address string
	Port    int
	// TLS: the server listens with TLS only; the gate dials it with the
	// member's own certificate.
	TLS *TLS
	// User is the ACL user the gate asks ROLE as: the sentinels'
	// monitoring user, whose password it reads from sentinel.conf at the
	// stop (Sentinel keeps it there, rotations included).
	User  string
	Bound time.Duration
}

// GateSettle is how long a master whose role was handed over while its
// stop waited keeps answering, as a replica, before the stop goes on:
// Sentinel spreads a new master to the sentinels that did not elect it
// with its hello messages, every 2 s.
const GateSettle = 2 * time.Second

// GateScript is where the gate's script lives in a member.
const GateScript = "/usr/local/lib/rsf/handover-gate"

// GateDropIn is the systemd drop-in that makes the engine's server unit
// run the gate before it stops the server.
func GateDropIn(e engine.Engine) string {
	return "/etc/systemd/system/" + e.ServerUnit + ".service.d/rsf-handover-gate.conf"
}

// GateSentinelDropIn is the drop-in, and its content, that orders the
// engine's sentinel before its server: systemd stops units in the reverse
// order, so the member's sentinel keeps answering (clients that ask it
// for the master, the failover's vote) until the gate let the server go.
func GateSentinelDropIn(e engine.Engine) (path string, content []byte) {
	return "/etc/systemd/system/" + e.SentinelUnit + ".service.d/rsf-handover-gate.conf",
		fmt.Appendf(nil, "# Rendered by redis-sentinel-operator (see %s).\n[Unit]\nBefore=%s.service\n", GateScript, e.ServerUnit)
}

// Files renders the gate's script and drop-in.
func (g HandoverGate) Files() (script, dropIn []byte, err error) {
	addr, err := ipLiteral("Address", g.Address)
	if err != nil {
		return nil, nil, err
	}
	if err := port("Port", g.Port); err != nil {
		return nil, nil, err
	}
	if err := userName("User", g.User); err != nil {
		return nil, nil, err
	}
	bound := int(g.Bound / time.Second)
	if bound < 1 {
		return nil, nil, fieldErr("Bound", "must be at least 1s; got %s", g.Bound)
	}
	dial := []string{"-h", addr, "-p", strconv.Itoa(g.Port)}
	if g.TLS != nil {
		dial = append(dial, "--tls", "--cacert", g.TLS.CAFile, "--cert", g.TLS.MemberFile, "--key", g.TLS.MemberFile)
	}
	script = fmt.Appendf(nil, `#!/bin/sh
# Rendered by redis-sentinel-operator: %s's ExecStop. While this
# server answers ROLE as the master, its stop waits (at most %d s) for the
# operator to hand the role over with a planned failover; otherwise the
# stop goes on at once.
REDISCLI_AUTH=$(awk '$1 == "sentinel" && $2 == "auth-pass" { gsub(/"/, "", $4); print $4; exit }' %s)
export REDISCLI_AUTH
end=$(( $(date +%%s) + %d ))
held=0
while [ "$(date +%%s)" -lt "$end" ]; do
	role=$(timeout 2 %s %s --user %s --no-auth-warning ROLE 2>/dev/null | head -n 1)
	if [ "$role" != master ]; then
		# Handed over while this stop waited: answer a little longer, as
		# a replica (clients get READONLY and ask Sentinel again), while
		# the sentinels spread the new master.
		[ "$held" = 0 ] || sleep %d
		exit 0
	fi
	held=1
	sleep 0.2
done
exit 0
`, g.Engine.ServerUnit, bound, g.Engine.SentinelConf, bound, g.Engine.CLI, strings.Join(dial, " "), g.User, int(GateSettle/time.Second))
	// "+": Debian's unit lets the server's processes execute nothing but
	// the server (NoExecPaths=/), so the gate runs outside that sandbox, as
	// root. The unit's TimeoutStopSec=0 (the server may take its time to
	// save) stays: the gate bounds itself.
	dropIn = fmt.Appendf(nil, "# Rendered by redis-sentinel-operator (see %s).\n[Service]\nExecStop=+%s\n", GateScript, GateScript)
	return script, dropIn, nil
}
