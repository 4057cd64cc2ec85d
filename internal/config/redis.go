// Package config reads how a backend (or the operator's canary) reaches
// Redis: a single instance from REDIS_URL, or a Sentinel-managed master from
// REDIS_SENTINEL_ADDRS + REDIS_SENTINEL_MASTER_NAME (authenticated to the
// sentinels as REDIS_SENTINEL_USERNAME with REDIS_SENTINEL_PASSWORD), with
// the data user, password and DB still taken from REDIS_URL. With TLS
// (rediss://), REDIS_TLS_CA_CERT, REDIS_TLS_CLIENT_CERT and
// REDIS_TLS_CLIENT_KEY hold the PEM of the CA to trust and of the client
// certificate to present.
//
// Errors name the offending variable and never quote a secret: a REDIS_URL
// that fails to parse is not echoed, since it may carry a password.
package config

import (
	"crypto/tls"
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

	"github.com/incusops/redis-sentinel-operator/internal/certs"
)

// Names of the environment variables (and of the keys of a formation's
// connection Secret, which uses the same names).
const (
	EnvURL              = "REDIS_URL"
	EnvSentinelAddrs    = "REDIS_SENTINEL_ADDRS"
	EnvMasterName       = "REDIS_SENTINEL_MASTER_NAME"
	EnvSentinelUsername = "REDIS_SENTINEL_USERNAME"
	EnvSentinelPassword = "REDIS_SENTINEL_PASSWORD"
	EnvTLSCACert        = "REDIS_TLS_CA_CERT"
	EnvTLSClientCert    = "REDIS_TLS_CLIENT_CERT"
	EnvTLSClientKey     = "REDIS_TLS_CLIENT_KEY"
)

// Keys lists every variable this package reads, in documentation order.
func Keys() []string {
	return []string{EnvURL, EnvSentinelAddrs, EnvMasterName, EnvSentinelUsername, EnvSentinelPassword, EnvTLSCACert, EnvTLSClientCert, EnvTLSClientKey}
}

const redacted = "<redacted>"

// Redis is a parsed Redis connection configuration.
//
// URL, Password, SentinelPassword and TLSClientKey are secrets: String,
// GoString, MarshalLog (logr) and MarshalLogObject (zap) redact them, so a
// Redis value can be logged as a whole.
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
	// TLS is true for a rediss:// URL, and in Sentinel mode without
	// REDIS_URL when a TLS variable is set. It covers the sentinels and the
	// master alike.
	TLS bool
	// TLSCACert is the PEM of the CA to trust (REDIS_TLS_CA_CERT); nil
	// means the system roots.
	TLSCACert []byte
	// TLSClientCert and TLSClientKey are the PEM client certificate and its
	// key, both or neither (for tls-auth-clients). The key is a secret.
	TLSClientCert []byte
	TLSClientKey  []byte

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

// FromSecretData reads the configuration from a connection Secret's data,
// whose keys are the variables' names.
func FromSecretData(data map[string][]byte) (Redis, error) {
	return parse(func(k string) string { return string(data[k]) })
}

// TLSConfig is the TLS configuration to dial with (certs.ClientConfig with
// the configured CA and client certificate); nil without TLS.
func (r Redis) TLSConfig() (*tls.Config, error) {
	if !r.TLS {
		return nil, nil
	}
	return certs.ClientConfig(r.TLSCACert, r.TLSClientCert, r.TLSClientKey)
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

	urlOK := false
	switch {
	case r.URL != "":
		if err := r.parseURL(); err != nil {
			errs = append(errs, err)
		} else {
			urlOK = true
		}
	case !sentinel:
		errs = append(errs, fmt.Errorf("%s is required when %s is empty (single-instance mode)", EnvURL, EnvSentinelAddrs))
	}

	tlsSet, err := r.parseTLS(get)
	if err != nil {
		errs = append(errs, err)
	}
	if len(tlsSet) > 0 {
		switch {
		case urlOK && !r.TLS:
			errs = append(errs, fmt.Errorf("%s set but %s is not rediss://: the TLS variables need TLS", strings.Join(tlsSet, ", "), EnvURL))
		case r.URL == "" && sentinel:
			// No URL to pick the scheme: whoever gave a CA or a client
			// certificate means TLS.
			r.TLS = true
		}
	}

	if len(errs) > 0 {
		return Redis{}, errors.Join(errs...)
	}
	return r, nil
}

// parseTLS fills the TLS PEM fields and validates them with
// certs.ClientConfig; it returns the names of the TLS variables set. A value
// of only whitespace counts as unset. Errors quote no PEM.
func (r *Redis) parseTLS(get func(string) string) ([]string, error) {
	var set []string
	pemOf := func(name string) []byte {
		v := get(name)
		if strings.TrimSpace(v) == "" {
			return nil
		}
		set = append(set, name)
		return []byte(v)
	}
	r.TLSCACert = pemOf(EnvTLSCACert)
	r.TLSClientCert = pemOf(EnvTLSClientCert)
	r.TLSClientKey = pemOf(EnvTLSClientKey)

	var errs []error
	if r.TLSCACert != nil {
		if _, err := certs.ClientConfig(r.TLSCACert, nil, nil); err != nil {
			errs = append(errs, fmt.Errorf("%s is invalid: it holds no PEM certificate (want one or more -----BEGIN CERTIFICATE----- blocks)", EnvTLSCACert))
		}
	}
	switch {
	case r.TLSClientCert != nil && r.TLSClientKey == nil:
		errs = append(errs, fmt.Errorf("%s is set but %s is empty: a client certificate needs its key", EnvTLSClientCert, EnvTLSClientKey))
	case r.TLSClientCert == nil && r.TLSClientKey != nil:
		errs = append(errs, fmt.Errorf("%s is set but %s is empty: a client key needs its certificate", EnvTLSClientKey, EnvTLSClientCert))
	case r.TLSClientCert != nil:
		if _, err := certs.ClientConfig(nil, r.TLSClientCert, r.TLSClientKey); err != nil {
			errs = append(errs, describeKeyPairError(err))
		}
	}
	return set, errors.Join(errs...)
}

// describeKeyPairError turns a tls.X509KeyPair error into one naming the
// variable at fault and quoting nothing from either input: its messages may
// list the PEM block types found, and x509's may quote certificate fields.
func describeKeyPairError(err error) error {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "does not match public key"):
		return fmt.Errorf("%s does not match %s (not the key of that certificate)", EnvTLSClientKey, EnvTLSClientCert)
	case strings.Contains(msg, "but did find a private key"):
		return fmt.Errorf("%s holds a private key, not a certificate: were %s and %s switched?", EnvTLSClientCert, EnvTLSClientCert, EnvTLSClientKey)
	case strings.Contains(msg, "certificate input"):
		return fmt.Errorf("%s is invalid: it holds no PEM certificate", EnvTLSClientCert)
	case strings.Contains(msg, "certificate rather than a key"):
		return fmt.Errorf("%s holds a certificate, not a private key: were %s and %s switched?", EnvTLSClientKey, EnvTLSClientCert, EnvTLSClientKey)
	case strings.Contains(msg, "key input"):
		return fmt.Errorf("%s is invalid: it holds no PEM private key (the value is not shown)", EnvTLSClientKey)
	case strings.Contains(msg, "private key"):
		return fmt.Errorf("%s is invalid: its private key does not parse (the value is not shown)", EnvTLSClientKey)
	case strings.Contains(msg, "x509:"), strings.Contains(msg, "public key algorithm"):
		return fmt.Errorf("%s is invalid: its certificate does not parse", EnvTLSClientCert)
	default:
		return fmt.Errorf("%s and %s do not make a usable client certificate (the values are not shown)", EnvTLSClientCert, EnvTLSClientKey)
	}
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
	TLSCA            bool     `json:"tlsCA,omitempty"`
	TLSClientCert    bool     `json:"tlsClientCert,omitempty"`
	TLSClientKey     string   `json:"tlsClientKey,omitempty"`
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
		TLSCA:         r.TLSCACert != nil,
		TLSClientCert: r.TLSClientCert != nil,
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
	if r.TLSClientKey != nil {
		v.TLSClientKey = redacted
	}
	return v
}

// String describes the configuration with passwords and the client key
// redacted; of TLS it says only what is configured.
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
	if v.TLSCA {
		b.WriteString(" tls_ca=true")
	}
	if v.TLSClientCert {
		b.WriteString(" tls_client_cert=true")
	}
	if v.TLSClientKey != "" {
		b.WriteString(" tls_client_key=" + redacted)
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
	if v.TLSCA {
		enc.AddBool("tlsCA", true)
	}
	if v.TLSClientCert {
		enc.AddBool("tlsClientCert", true)
	}
	if v.TLSClientKey != "" {
		enc.AddString("tlsClientKey", v.TLSClientKey)
	}
	return nil
}
