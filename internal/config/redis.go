// Package config reads how a backend (or the operator's canary) reaches
// Redis: a single instance from REDIS_URL, or a Sentinel-managed master from
// REDIS_SENTINEL_ADDRS + REDIS_SENTINEL_MASTER_NAME (authenticated to the
// sentinels as REDIS_SENTINEL_USERNAME with REDIS_SENTINEL_PASSWORD), with
// the data user, password and DB still taken from REDIS_URL.
//
// Errors name the offending variable and never quote a secret: a REDIS_URL
// that fails to parse is not echoed, since it may carry a password.
package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"unicode"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap/zapcore"
)

// Names of the environment variables (and of the keys of a formation's
// connection Secret, which uses the same names).
const (
	EnvURL              = "REDIS_URL"
	EnvSentinelAddrs    = "REDIS_SENTINEL_ADDRS"
	EnvMasterName       = "REDIS_SENTINEL_MASTER_NAME"
	EnvSentinelUsername = "REDIS_SENTINEL_USERNAME"
	EnvSentinelPassword = "REDIS_SENTINEL_PASSWORD"
)

// Keys lists every variable this package reads, in documentation order.
func Keys() []string {
	return []string{EnvURL, EnvSentinelAddrs, EnvMasterName, EnvSentinelUsername, EnvSentinelPassword}
}

const redacted = "<redacted>"

// Redis is a parsed Redis connection configuration.
//
// URL, Password and SentinelPassword are secrets: String, GoString,
// MarshalLog (logr) and MarshalLogObject (zap) redact them, so a Redis value
// can be logged as a whole.
type Redis struct {
	// URL is REDIS_URL as given. It may hold a password: never log it.
	URL string
	// Network is "tcp" or "unix" (from the URL scheme); "tcp" when REDIS_URL
	// is unset.
	Network string
	// Addr is host:port (or the socket path) from REDIS_URL. In Sentinel mode
	// it is ignored: the master's address comes from the sentinels.
	Addr string
	// Username is the ACL user from REDIS_URL, if any.
	Username string
	// Password is the data-node password from REDIS_URL.
	Password string
	// DB is the database number from REDIS_URL's path (0 by default).
	DB int
	// TLS is true for a rediss:// URL.
	TLS bool

	// SentinelAddrs are the sentinels' host:port, validated, in the order
	// given, without duplicates. Empty means single-instance mode.
	SentinelAddrs []string
	// MasterName is the name the sentinels monitor the master under.
	MasterName string
	// SentinelUsername is the ACL user the client authenticates to the
	// sentinels as (AUTH/HELLO with a user name); empty means the sentinels'
	// default user (requirepass). Not a secret.
	SentinelUsername string
	// SentinelPassword is SentinelUsername's password on the sentinels, or
	// their requirepass when SentinelUsername is empty.
	SentinelPassword string
}

// SentinelMode reports whether the client must go through the sentinels.
func (r Redis) SentinelMode() bool { return len(r.SentinelAddrs) > 0 }

// FromEnv reads the configuration with getenv (os.Getenv when nil).
func FromEnv(getenv func(string) string) (Redis, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	return parse(getenv)
}

// FromMap reads the configuration from a map holding the same keys as the
// environment, e.g. a connection Secret's data converted to strings.
func FromMap(m map[string]string) (Redis, error) {
	return parse(func(k string) string { return m[k] })
}

// masterNameRE is what the operator and Sentinel accept as a master name.
var masterNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

func parse(get func(string) string) (Redis, error) {
	r := Redis{
		URL:              strings.TrimSpace(get(EnvURL)),
		MasterName:       strings.TrimSpace(get(EnvMasterName)),
		SentinelUsername: strings.TrimSpace(get(EnvSentinelUsername)),
		SentinelPassword: get(EnvSentinelPassword),
		Network:          "tcp",
	}

	var errs []error

	addrs, err := ParseSentinelAddrs(get(EnvSentinelAddrs))
	if err != nil {
		errs = append(errs, err)
	}
	r.SentinelAddrs = addrs

	sentinel := len(addrs) > 0 || err != nil
	if sentinel {
		switch {
		case r.MasterName == "":
			errs = append(errs, fmt.Errorf("%s is required when %s is set", EnvMasterName, EnvSentinelAddrs))
		case !masterNameRE.MatchString(r.MasterName):
			errs = append(errs, fmt.Errorf("%s %q is invalid: want 1-128 characters of [A-Za-z0-9._-], starting with a letter or digit", EnvMasterName, r.MasterName))
		}
		if r.SentinelUsername != "" {
			if err := checkUsername(r.SentinelUsername); err != nil {
				errs = append(errs, err)
			} else if r.SentinelPassword == "" {
				// go-redis sends no AUTH without a password: the user
				// name would be silently dropped.
				errs = append(errs, fmt.Errorf("%s is set but %s is empty: a sentinel user needs its password", EnvSentinelUsername, EnvSentinelPassword))
			}
		}
	}

	switch {
	case r.URL != "":
		if err := r.parseURL(); err != nil {
			errs = append(errs, err)
		}
	case !sentinel:
		errs = append(errs, fmt.Errorf("%s is required when %s is empty (single-instance mode)", EnvURL, EnvSentinelAddrs))
	}

	if len(errs) > 0 {
		return Redis{}, errors.Join(errs...)
	}
	return r, nil
}

// checkUsername refuses what cannot be an ACL user name: whitespace and
// control characters (ACL SETUSER takes the name as one word). The value is
// not quoted: a misplaced password may sit there.
func checkUsername(u string) error {
	for _, c := range u {
		if unicode.IsSpace(c) || unicode.IsControl(c) {
			return fmt.Errorf("%s is invalid: it contains whitespace or control characters (the value is not shown)", EnvSentinelUsername)
		}
	}
	return nil
}

// parseURL fills Network, Addr, Username, Password, DB and TLS from r.URL
// with redis.ParseURL. Its errors never include the URL or a part of it.
func (r *Redis) parseURL() error {
	opt, err := redis.ParseURL(r.URL)
	if err != nil {
		return fmt.Errorf("%s is invalid: %s (want redis://[[user]:password@]host:port/db, rediss://... or unix:///path; the value is not shown because it may hold a password; percent-encode special characters in the password)", EnvURL, describeURLError(err))
	}
	if opt.DB < 0 {
		return fmt.Errorf("%s is invalid: the database number must be >= 0", EnvURL)
	}
	if opt.Network == "tcp" {
		host, port, err := net.SplitHostPort(opt.Addr)
		if err != nil || host == "" {
			return fmt.Errorf("%s is invalid: it has no host", EnvURL)
		}
		if _, err := parsePort(port); err != nil {
			return fmt.Errorf("%s is invalid: %v", EnvURL, err)
		}
	}
	r.Network = opt.Network
	r.Addr = opt.Addr
	r.Username = opt.Username
	r.Password = opt.Password
	r.DB = opt.DB
	r.TLS = opt.TLSConfig != nil
	return nil
}

// describeURLError turns a redis.ParseURL error into a reason that quotes
// nothing from the URL: url.Parse errors repeat the whole URL, and go-redis
// errors may repeat the path, which holds the tail of an unescaped password
// containing '/'.
func describeURLError(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return "not a parsable URL"
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "invalid URL scheme"):
		return "unsupported scheme (want redis, rediss or unix)"
	case strings.Contains(msg, "invalid database number"):
		return "the database number (the URL path) is not an integer"
	case strings.Contains(msg, "invalid URL path"):
		return "the URL path must be a single database number"
	case strings.Contains(msg, "unexpected option"):
		return "unknown query option"
	case strings.Contains(msg, "empty unix socket path"):
		return "empty unix socket path"
	case strings.HasPrefix(msg, "redis: invalid "):
		return "bad query option value"
	default:
		return "unparsable"
	}
}

// ParseSentinelAddrs parses a comma-separated list of host:port. Entries are
// trimmed, empty entries dropped, duplicates removed (first one kept); each
// must have a non-empty host and a port in 1..65535. An empty list is not an
// error.
func ParseSentinelAddrs(csv string) ([]string, error) {
	var (
		out  []string
		errs []error
		seen = map[string]bool{}
	)
	for i, raw := range strings.Split(csv, ",") {
		entry := strings.TrimSpace(raw)
		if entry == "" {
			continue
		}
		host, port, err := net.SplitHostPort(entry)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s entry %d %s: want host:port", EnvSentinelAddrs, i+1, quoteEntry(entry)))
			continue
		}
		if strings.TrimSpace(host) == "" {
			errs = append(errs, fmt.Errorf("%s entry %d %s: missing host", EnvSentinelAddrs, i+1, quoteEntry(entry)))
			continue
		}
		p, err := parsePort(port)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s entry %d %s: %v", EnvSentinelAddrs, i+1, quoteEntry(entry), err))
			continue
		}
		norm := net.JoinHostPort(host, strconv.Itoa(p))
		if seen[norm] {
			continue
		}
		seen[norm] = true
		out = append(out, norm)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// quoteEntry quotes a sentinel address for an error message, unless it looks
// like it carries credentials (someone pasted a URL).
func quoteEntry(s string) string {
	if strings.ContainsAny(s, "@/") {
		return redacted
	}
	return strconv.Quote(s)
}

func parsePort(s string) (int, error) {
	if s == "" {
		return 0, errors.New("missing port")
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n < 1 || n > 65535 {
		return 0, errors.New("port must be a number in 1..65535")
	}
	return int(n), nil
}

// redactedView is what the logging helpers expose.
type redactedView struct {
	Mode             string   `json:"mode"`
	Addr             string   `json:"addr,omitempty"`
	SentinelAddrs    []string `json:"sentinelAddrs,omitempty"`
	MasterName       string   `json:"masterName,omitempty"`
	Username         string   `json:"username,omitempty"`
	Password         string   `json:"password,omitempty"`
	SentinelUsername string   `json:"sentinelUsername,omitempty"`
	SentinelPassword string   `json:"sentinelPassword,omitempty"`
	DB               int      `json:"db"`
	TLS              bool     `json:"tls,omitempty"`
}

func (r Redis) view() redactedView {
	v := redactedView{
		Mode:          "single",
		Addr:          r.Addr,
		SentinelAddrs: r.SentinelAddrs,
		MasterName:    r.MasterName,
		Username:      r.Username,
		DB:            r.DB,
		TLS:           r.TLS,
	}
	if r.SentinelMode() {
		v.Mode = "sentinel"
		v.Addr = ""
		v.SentinelUsername = r.SentinelUsername
	}
	if r.Password != "" {
		v.Password = redacted
	}
	if r.SentinelPassword != "" {
		v.SentinelPassword = redacted
	}
	return v
}

// String describes the configuration with passwords redacted.
func (r Redis) String() string {
	v := r.view()
	var b strings.Builder
	b.WriteString("redis{mode=")
	b.WriteString(v.Mode)
	if v.Mode == "sentinel" {
		fmt.Fprintf(&b, " master=%s sentinels=[%s]", v.MasterName, strings.Join(v.SentinelAddrs, ","))
	} else {
		fmt.Fprintf(&b, " addr=%s", v.Addr)
	}
	fmt.Fprintf(&b, " db=%d", v.DB)
	if v.Username != "" {
		fmt.Fprintf(&b, " user=%s", v.Username)
	}
	if v.Password != "" {
		b.WriteString(" password=" + redacted)
	}
	if v.SentinelUsername != "" {
		fmt.Fprintf(&b, " sentinel_user=%s", v.SentinelUsername)
	}
	if v.SentinelPassword != "" {
		b.WriteString(" sentinel_password=" + redacted)
	}
	if v.TLS {
		b.WriteString(" tls=true")
	}
	b.WriteString("}")
	return b.String()
}

// GoString makes %#v redact too.
func (r Redis) GoString() string { return "config." + r.String() }

// MarshalLog implements logr.Marshaler (used by controller-runtime's
// loggers): the value logged has the passwords redacted.
func (r Redis) MarshalLog() any { return r.view() }

// MarshalLogObject implements zapcore.ObjectMarshaler for zap.Object /
// zap.Any.
func (r Redis) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	v := r.view()
	enc.AddString("mode", v.Mode)
	if v.Addr != "" {
		enc.AddString("addr", v.Addr)
	}
	if len(v.SentinelAddrs) > 0 {
		enc.AddString("sentinelAddrs", strings.Join(v.SentinelAddrs, ","))
		enc.AddString("masterName", v.MasterName)
	}
	if v.Username != "" {
		enc.AddString("username", v.Username)
	}
	if v.Password != "" {
		enc.AddString("password", v.Password)
	}
	if v.SentinelUsername != "" {
		enc.AddString("sentinelUsername", v.SentinelUsername)
	}
	if v.SentinelPassword != "" {
		enc.AddString("sentinelPassword", v.SentinelPassword)
	}
	enc.AddInt("db", v.DB)
	if v.TLS {
		enc.AddBool("tls", true)
	}
	return nil
}
