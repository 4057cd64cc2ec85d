// Package render turns the operator's desired state into redis.conf and
// sentinel.conf for Debian bookworm's redis-server / redis-sentinel 7.0.
//
// Everything here is a pure function of its input: no I/O, no clock, no
// randomness, so the same input always yields the same bytes.
//
// Safety by construction: every string value (passwords, addresses, names,
// paths, memory sizes, enum values) is written through quoteToken, which
// produces a double-quoted token that Redis's config parser (sdssplitargs in
// sds.c) reads back as exactly that string. The token only ever contains
// printable ASCII: newlines, carriage returns, quotes, backslashes and every
// other non-printable byte are escaped, so no value can end its line or start
// a new directive, whatever it contains. Numbers are written from ints, and
// keywords (directive names, yes/no) are compile-time constants.
//
// ACL users are written as `user` lines with their passwords' SHA-256 only;
// user names and rules are validated so that no input can turn a user on,
// give it a password or reset it, and so that they survive Redis's own
// unquoted rewrite of these lines (CONFIG REWRITE, SENTINEL FLUSHCONFIG).
// The only clear-text passwords in the files are the ones Redis must send:
// masterauth, and Sentinel's sentinel-pass and auth-pass.
package render

import (
	"bytes"
	"fmt"
	"regexp"
	"strconv"
)

// SavePoint is one RDB snapshot trigger: save after Seconds if at least
// Changes keys changed.
type SavePoint struct {
	Seconds, Changes int
}

// FieldError reports an input field that cannot be rendered. Reason never
// contains a secret: for password fields it is one of a few fixed sentences.
type FieldError struct {
	Field  string // Go field path, e.g. "MasterAuth", "ReplicaOf.Port", "Users[1].Rules[0]"
	Reason string
}

func (e *FieldError) Error() string {
	return "render: " + e.Field + ": " + e.Reason
}

func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// quoteToken is the one and only way a string value reaches a config file.
//
// It mirrors Redis's own sdscatrepr(), the inverse of sdssplitargs(): the
// result is wrapped in double quotes; '\\' and '"' are backslash-escaped;
// \n \r \t \a \b use their short escapes; other bytes outside printable ASCII
// (0x20..0x7e) become \xHH. Inside double quotes sdssplitargs decodes exactly
// these escapes, and the closing quote is always followed by a space or the
// end of the line, as sdssplitargs requires.
func quoteToken(s string) string {
	const hex = "0123456789abcdef"
	b := make([]byte, 0, len(s)+2)
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '\\', '"':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		case '\a':
			b = append(b, '\\', 'a')
		case '\b':
			b = append(b, '\\', 'b')
		default:
			if c >= 0x20 && c <= 0x7e {
				b = append(b, c)
			} else {
				b = append(b, '\\', 'x', hex[c>>4], hex[c&0x0f])
			}
		}
	}
	return string(append(b, '"'))
}

// token is one already-encoded argument of a directive. It can only be made
// by str (quoted string), num (decimal int) or kw (constant keyword).
type token struct{ enc string }

func str(s string) token { return token{quoteToken(s)} }
func num(n int) token    { return token{strconv.Itoa(n)} }

var keywordRE = regexp.MustCompile(`^[a-z][a-z0-9-]*$`)

// kw is for compile-time constant keywords only (directive names, yes/no,
// sentinel sub-commands). Anything else is a programming error.
func kw(k string) token {
	if !keywordRE.MatchString(k) {
		panic("render: invalid keyword " + strconv.Quote(k))
	}
	return token{k}
}

func yesNo(b bool) token {
	if b {
		return kw("yes")
	}
	return kw("no")
}

// conf accumulates a config file, one directive per line.
type conf struct{ buf bytes.Buffer }

// comment writes constant comment text; one line per argument.
func (c *conf) comment(lines ...string) {
	for _, l := range lines {
		for i := 0; i < len(l); i++ {
			if l[i] < 0x20 || l[i] > 0x7e {
				panic("render: comment must be one line of printable ASCII")
			}
		}
		if l == "" {
			c.buf.WriteString("#\n")
			continue
		}
		c.buf.WriteString("# ")
		c.buf.WriteString(l)
		c.buf.WriteByte('\n')
	}
}

func (c *conf) blank() { c.buf.WriteByte('\n') }

func (c *conf) directive(name string, args ...token) {
	c.buf.WriteString(kw(name).enc)
	for _, a := range args {
		c.buf.WriteByte(' ')
		c.buf.WriteString(a.enc)
	}
	c.buf.WriteByte('\n')
}

func (c *conf) bytes() []byte { return bytes.Clone(c.buf.Bytes()) }
