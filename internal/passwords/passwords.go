// Package passwords holds the operator's password policy. Errors describe
// what is wrong with a password without ever quoting it.
package passwords

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// MinLength is the shortest password accepted outside the lab.
const MinLength = 16

// minDistinct rejects long but trivial passwords such as "aaaaaaaaaaaaaaaa".
const minDistinct = 6

// placeholders are fragments of the values people leave in sample files and
// vault templates; outside the lab a password containing one is refused
// (the seed role's vault assertion).
var placeholders = []string{
	"change-me", "changeme", "change_me", "replace-me", "replaceme", "placeholder",
	"example", "lab-only", "password", "secret", "default", "<random", "todo", "xxxx",
}

var (
	// ErrEmpty is an empty password.
	ErrEmpty = errors.New("is empty")
	// ErrCharset is a password Sentinel cannot store: it rewrites its
	// config file with passwords unquoted.
	ErrCharset = errors.New("contains a space, quote, backslash or non-printable character, which Sentinel cannot store in its config file")
	// ErrWeak is a short or trivial password outside the lab.
	ErrWeak = fmt.Errorf("is weak: it needs at least %d characters and %d distinct ones outside the lab", MinLength, minDistinct)
	// ErrPlaceholder is a placeholder value outside the lab.
	ErrPlaceholder = errors.New("looks like a placeholder (e.g. contains \"change-me\" or \"example\"); set a real random value outside the lab")
)

// Check applies the policy. strict is true outside the lab.
func Check(password string, strict bool) error {
	if password == "" {
		return ErrEmpty
	}
	for i := 0; i < len(password); i++ {
		if c := password[i]; c <= ' ' || c > '~' || c == '"' || c == '\'' || c == '\\' {
			return ErrCharset
		}
	}
	if !strict {
		return nil
	}
	lower := strings.ToLower(password)
	for _, p := range placeholders {
		if strings.Contains(lower, p) {
			return ErrPlaceholder
		}
	}
	distinct := map[byte]bool{}
	for i := 0; i < len(password); i++ {
		distinct[password[i]] = true
	}
	if len(password) < MinLength || len(distinct) < minDistinct {
		return ErrWeak
	}
	return nil
}

// Generate returns a random password that passes the strict policy: 32
// random bytes in URL-safe base64 (43 characters Sentinel can store).
func Generate() (string, error) {
	for {
		b := make([]byte, 32)
		if _, err := rand.Read(b); err != nil {
			return "", fmt.Errorf("generating a password: %w", err)
		}
		if p := base64.RawURLEncoding.EncodeToString(b); Check(p, true) == nil {
			return p, nil
		}
	}
}
