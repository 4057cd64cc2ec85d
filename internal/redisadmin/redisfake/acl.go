package redisfake

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/incusops/redis-sentinel-operator/internal/acl"
	"github.com/incusops/redis-sentinel-operator/internal/endpoint"
)

// aclUser is a simulated ACL user: whether it is on, the SHA-256 of the
// passwords it accepts (or nopass) and its rules, kept as given. Rights are
// not enforced: who may log in is.
type aclUser struct {
	on     bool
	nopass bool
	hashes map[string]bool
	rules  []string
}

func (u *aclUser) clone() *aclUser {
	c := *u
	c.hashes = make(map[string]bool, len(u.hashes))
	for h := range u.hashes {
		c.hashes[h] = true
	}
	c.rules = slices.Clone(u.rules)
	return &c
}

func hashPassword(pw string) string {
	sum := sha256.Sum256([]byte(pw))
	return hex.EncodeToString(sum[:])
}

// users are a server's or sentinel's ACL users.
type users map[string]*aclUser

// defaultUsers is a fresh Redis: the default user on, without password.
func defaultUsers() users {
	return users{acl.DefaultUser: {on: true, nopass: true, hashes: map[string]bool{}}}
}

func (us users) clone() users {
	c := make(users, len(us))
	for n, u := range us {
		c[n] = u.clone()
	}
	return c
}

// accepts is AUTH: an empty name is the default user.
func (us users) accepts(name, password string) bool {
	if name == "" {
		name = acl.DefaultUser
	}
	u := us[name]
	return u != nil && u.on && (u.nopass || u.hashes[hashPassword(password)])
}

// requirepass is the directive: the default user's only password.
func (us users) requirepass(pw string) {
	u := us[acl.DefaultUser]
	u.nopass = pw == ""
	u.hashes = map[string]bool{}
	if pw != "" {
		u.hashes[hashPassword(pw)] = true
	}
}

// errACL is Redis 7.0's answer to a modifier it refuses.
func errACL(op, why string) error {
	return fmt.Errorf("ERR Error in ACL SETUSER modifier '%s': %s", op, why)
}

// setUser applies ACL SETUSER name ops..., all or nothing, as Redis 7.0
// does. refused are rules the simulated server does not know.
func (us users) setUser(name string, ops []string, refused map[string]bool) error {
	u := &aclUser{hashes: map[string]bool{}}
	if old := us[name]; old != nil {
		u = old.clone()
	}
	for _, op := range ops {
		switch lower := strings.ToLower(op); {
		case lower == "on":
			u.on = true
		case lower == "off":
			u.on = false
		case lower == "nopass":
			u.nopass, u.hashes = true, map[string]bool{}
		case lower == "resetpass":
			u.nopass, u.hashes = false, map[string]bool{}
		case lower == "reset":
			u = &aclUser{hashes: map[string]bool{}}
		case strings.HasPrefix(op, ">"):
			u.hashes[hashPassword(op[1:])] = true
			u.nopass = false
		case strings.HasPrefix(op, "<"):
			if !u.hashes[hashPassword(op[1:])] {
				return errACL("<", "no such password") // the password is never echoed
			}
			delete(u.hashes, hashPassword(op[1:]))
		case strings.HasPrefix(op, "#"), strings.HasPrefix(op, "!"):
			h := strings.ToLower(op[1:])
			if _, err := hex.DecodeString(h); err != nil || len(h) != 64 {
				return errACL(op, "The password hash must be exactly 64 characters and contain only lowercase hexadecimal characters")
			}
			if op[0] == '#' {
				u.hashes[h], u.nopass = true, false
			} else {
				delete(u.hashes, h)
			}
		case refused[op]:
			return errACL(op, "Unknown command or category name in ACL")
		case op == "" || strings.ContainsAny(op, " \t\r\n\"'") || !ruleShape(op):
			return errACL(op, "Syntax error")
		default:
			u.rules = append(u.rules, op)
		}
	}
	us[name] = u
	return nil
}

// ruleShape: the rules Redis knows the shape of (commands, categories, key
// and channel patterns, their resets, and the flags Redis writes back).
func ruleShape(op string) bool {
	switch op {
	case "allkeys", "allchannels", "allcommands", "resetkeys", "resetchannels", "nocommands",
		"sanitize-payload", "skip-sanitize-payload", "clearselectors":
		return true
	}
	return len(op) > 1 && strings.ContainsRune("+-~&%", rune(op[0]))
}

// userLine applies a `user` directive of a config file.
func (us users) userLine(args []string, refused map[string]bool) error {
	if len(args) < 1 {
		return fmt.Errorf("user needs a name")
	}
	name := args[0]
	if name == acl.DefaultUser {
		// Redis resets the built-in default user before applying the line.
		delete(us, name)
	} else if us[name] != nil {
		return fmt.Errorf("Duplicate user '%s' found", name)
	}
	return us.setUser(name, args[1:], refused)
}

// User is a simulated ACL user as tests see it.
type User struct {
	On bool
	// PasswordHashes are the SHA-256 (hex) of the passwords it accepts,
	// sorted: compare with acl.User.Hashes().
	PasswordHashes []string
	Rules          []string
}

func (u *aclUser) export() User {
	hashes := make([]string, 0, len(u.hashes))
	for h := range u.hashes {
		hashes = append(hashes, h)
	}
	slices.Sort(hashes)
	return User{On: u.on, PasswordHashes: hashes, Rules: slices.Clone(u.rules)}
}

// usersAt are the users of the redis-server or sentinel listening at e.
// Called with w.mu held.
func (w *World) usersAt(e endpoint.Endpoint) users {
	m := w.byHost[e.Host]
	switch {
	case m == nil:
		return nil
	case m.redis != nil && m.redis.port == e.Port:
		return m.redis.users
	case m.sentinel != nil && m.sentinel.port == e.Port:
		return m.sentinel.users
	}
	return nil
}

// User returns the ACL user name of the running redis-server or sentinel
// at addr.
func (w *World) User(addr endpoint.Endpoint, name string) (User, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	u := w.usersAt(addr)[name]
	if u == nil {
		return User{}, false
	}
	return u.export(), true
}

// Accepts reports whether the running redis-server or sentinel at addr
// lets user log in with password (an empty user is the default user).
func (w *World) Accepts(addr endpoint.Endpoint, user, password string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.usersAt(addr).accepts(user, password)
}

// UserPasswords are those of candidates that user accepts on the running
// redis-server or sentinel at addr, in order: e.g. both the old and the
// new password during a rotation's grace period, the new one after it.
func (w *World) UserPasswords(addr endpoint.Endpoint, user string, candidates ...string) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	us := w.usersAt(addr)
	var out []string
	for _, c := range candidates {
		if us.accepts(user, c) {
			out = append(out, c)
		}
	}
	return out
}

// MasterAuth is what the running redis-server at addr logs in to its
// master with (masteruser, masterauth).
func (w *World) MasterAuth(addr endpoint.Endpoint) (user, password string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	m := w.byHost[addr.Host]
	if m == nil || m.redis == nil || m.redis.port != addr.Port {
		return "", ""
	}
	return m.redis.masteruser, m.redis.masterauth
}

// SentinelConfig is the running sentinel at addr's credentials and
// sentinel-wide settings, as its config file would name them:
// "sentinel-user", "sentinel-pass", the SENTINEL CONFIG SET keys, and per
// monitored master "auth-user <master>" and "auth-pass <master>".
func (w *World) SentinelConfig(addr endpoint.Endpoint) map[string]string {
	w.mu.Lock()
	defer w.mu.Unlock()
	m := w.byHost[addr.Host]
	if m == nil || m.sentinel == nil || m.sentinel.port != addr.Port {
		return nil
	}
	out := map[string]string{}
	for k, v := range m.sentinel.config {
		out[k] = v
	}
	for name, mon := range m.sentinel.masters {
		out["auth-user "+name] = mon.authUser
		out["auth-pass "+name] = mon.authPass
	}
	return out
}

// refusedOn are the rules m's servers refuse: RefuseRules', and those
// naming a command its engine does not know (Redis 7.0 refuses
// +client|setinfo).
func (w *World) refusedOn(m *member) map[string]bool {
	if m.engine.ClientSetInfo {
		return w.refused
	}
	out := map[string]bool{"+client|setinfo": true}
	maps.Copy(out, w.refused)
	return out
}

// RefuseRules makes every simulated server refuse these ACL rules from
// now on (in ACL SETUSER and in config files), as Redis refuses a command
// it does not know.
func (w *World) RefuseRules(rules ...string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, r := range rules {
		w.refused[r] = true
	}
}
