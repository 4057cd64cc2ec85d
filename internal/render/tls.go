package render

// TLS makes a redis-server or redis-sentinel TLS-only: its port becomes
// the tls-port and the plaintext port is closed (port 0); it connects to
// masters, replicas and (Sentinel) other sentinels with TLS, presenting
// its own certificate as a client.
type TLS struct {
	// CAFile holds the CA certificates peers are checked against;
	// MemberFile the member's key and certificate chain, in one file
	// (read as tls-key-file and tls-cert-file), so that a renewal
	// replaces both with one atomic write: a server restarted half-way
	// would otherwise find a key that does not match its certificate
	// (engine.Engine's TLSCAFile and TLSMemberFile in the members).
	CAFile, MemberFile string
	// AuthClients requires every client to present a certificate signed
	// by the CA (tls-auth-clients yes).
	AuthClients bool
}

// listen writes the network directives for port: plaintext, or TLS only.
func (c *conf) listen(port int, t *TLS) {
	if t == nil {
		c.directive("port", num(port))
		return
	}
	c.directive("port", num(0))
	c.directive("tls-port", num(port))
	c.directive("tls-cert-file", str(t.MemberFile))
	c.directive("tls-key-file", str(t.MemberFile))
	c.directive("tls-ca-cert-file", str(t.CAFile))
	c.directive("tls-replication", kw("yes"))
	c.directive("tls-auth-clients", yesNo(t.AuthClients))
}

// Reload is what a running redis-server is given with CONFIG SET to load
// new TLS files written at the same paths: Redis 7 rebuilds its TLS
// context on it, for new connections; established ones keep going.
// (Sentinel 7.0 has no CONFIG command and its SENTINEL CONFIG SET takes no
// tls-* option: a sentinel takes new files only when it starts.)
func (t TLS) Reload() map[string]string {
	return map[string]string{"tls-cert-file": t.MemberFile, "tls-key-file": t.MemberFile, "tls-ca-cert-file": t.CAFile}
}
