package render

import (
	"math"
	"math/bits"
	"net"
	"regexp"
	"strconv"
	"strings"
)

// Fixed, secret-free reasons for password fields. Password errors never say
// which byte was offending or where: that would leak part of the secret.
const (
	reasonPasswordEmpty = "must not be empty"
	reasonPasswordNUL   = "must not contain a NUL byte (Redis 7.0 sends masterauth as a C string, so replication would authenticate with a truncated password)"
	reasonPasswordBare  = "must be printable ASCII without spaces or quotes: Sentinel 7.0 writes sentinel-pass and auth-pass back to sentinel.conf unquoted whenever it rewrites the file"
	// reasonRulePassword: a rule that would set or remove a password is
	// never shown, as it may carry one.
	reasonRulePassword = "must not set or remove passwords (>, <, #, !, nopass, resetpass): the operator adds the user's passwords itself"
)

var (
	masterNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
	// userNameRE: ACL user names. Redis 7.0 writes them back unquoted
	// (CONFIG REWRITE, SENTINEL FLUSHCONFIG, sentinel auth-user and
	// sentinel-user), so they are bare tokens.
	userNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)
	// aclRuleRE: the ACL rules a user may carry: command and category
	// rules (+get, -@all, +client|setname), key patterns (~k:*, %R~k:*),
	// channel patterns (&c:*) and the key, channel and command resets.
	// Never on/off, reset, passwords or selectors: User's own fields set
	// those. Patterns are printable ASCII without spaces or quotes, as
	// Redis 7.0 rewrites them unquoted. Mirrors the API's
	// BackendUserSpec.Rules pattern, narrowed to what Redis accepts.
	aclRuleRE   = regexp.MustCompile(`^(?:[+-]@?[a-z][a-z0-9_|.-]*|(?:%(?:R|W|RW))?~[!#-&(-~]+|&[!#-&(-~]+|allkeys|allchannels|allcommands|resetkeys|resetchannels|nocommands)$`)
	maxmemoryRE = regexp.MustCompile(`^[0-9]{1,15}([kKmMgG][bB]?)?$`)
)

var maxmemoryPolicies = map[string]bool{
	"volatile-lru": true, "allkeys-lru": true,
	"volatile-lfu": true, "allkeys-lfu": true,
	"volatile-random": true, "allkeys-random": true,
	"volatile-ttl": true, "noeviction": true,
}

var appendFsyncModes = map[string]bool{"always": true, "everysec": true, "no": true}

// show renders a non-secret input value for an error message: Go-quoted (so
// it stays on one line) and truncated.
func show(s string) string {
	const limit = 64
	if len(s) > limit {
		return strconv.Quote(s[:limit]) + "..."
	}
	return strconv.Quote(s)
}

// ipLiteral returns the canonical form of an IPv4 or IPv6 literal.
func ipLiteral(field, s string) (string, error) {
	ip := net.ParseIP(s)
	if ip == nil {
		return "", fieldErr(field, "must be an IPv4 or IPv6 literal, got %s", show(s))
	}
	return ip.String(), nil
}

func port(field string, p int) error {
	if p < 1 || p > 65535 {
		return fieldErr(field, "must be in 1..65535, got %d", p)
	}
	return nil
}

// runID checks a Sentinel run ID: 40 lowercase hex digits, as Sentinel
// draws them (it refuses another length).
func runID(field, id string) error {
	if len(id) != 40 || strings.Trim(id, "0123456789abcdef") != "" {
		return fieldErr(field, "must be 40 lowercase hex digits, got %d characters", len(id))
	}
	return nil
}

// intRange checks n against [lo, math.MaxInt32]: Redis parses these values
// with atoi/strtol into C ints.
func intRange(field string, n, lo int) error {
	if n < lo || n > math.MaxInt32 {
		return fieldErr(field, "must be in %d..%d, got %d", lo, math.MaxInt32, n)
	}
	return nil
}

// redisPassword validates a password that only ever appears in redis.conf
// (requirepass/masterauth), where quoteToken makes any byte safe.
func redisPassword(field, pw string) error {
	if pw == "" {
		return fieldErr(field, reasonPasswordEmpty)
	}
	for i := 0; i < len(pw); i++ {
		if pw[i] == 0 {
			return fieldErr(field, reasonPasswordNUL)
		}
	}
	return nil
}

// sentinelPassword validates a password that Sentinel persists itself.
// Sentinel 7.0's config rewrite emits "sentinel sentinel-pass %s" and
// "sentinel auth-pass <master> %s" without quoting, so only characters that
// survive as a bare sdssplitargs token are allowed: printable ASCII except
// space and the two quote characters (" and ').
func sentinelPassword(field, pw string) error {
	if pw == "" {
		return fieldErr(field, reasonPasswordEmpty)
	}
	for i := 0; i < len(pw); i++ {
		if !bareSafe(pw[i]) {
			return fieldErr(field, reasonPasswordBare)
		}
	}
	return nil
}

func bareSafe(c byte) bool {
	return c > 0x20 && c < 0x7f && c != '"' && c != '\''
}

func masterName(field, s string) error {
	if !masterNameRE.MatchString(s) {
		return fieldErr(field, "must match %s (Sentinel commands split on spaces), got %s", masterNameRE, show(s))
	}
	return nil
}

// maxmemory validates Redis memory notation. Redis 7.0's memtoull() does not
// detect overflow of digits*unit: "999999999999999gb" silently becomes
// 12191701587055345664 bytes, so such values are refused here.
func maxmemory(field, s string) error {
	if !maxmemoryRE.MatchString(s) {
		return fieldErr(field, "must match %s, got %s", maxmemoryRE, show(s))
	}
	i := strings.IndexFunc(s, func(r rune) bool { return r < '0' || r > '9' })
	digits, unit := s, ""
	if i >= 0 {
		digits, unit = s[:i], strings.ToLower(s[i:])
	}
	n, err := strconv.ParseUint(digits, 10, 64)
	if err != nil {
		return fieldErr(field, "must match %s, got %s", maxmemoryRE, show(s))
	}
	mul := map[string]uint64{"": 1, "k": 1000, "kb": 1 << 10, "m": 1000 * 1000, "mb": 1 << 20, "g": 1000 * 1000 * 1000, "gb": 1 << 30}[unit]
	if hi, _ := bits.Mul64(n, mul); hi != 0 {
		return fieldErr(field, "%s does not fit in 64 bits (Redis would silently wrap it)", show(s))
	}
	return nil
}
