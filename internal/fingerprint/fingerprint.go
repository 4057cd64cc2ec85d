// Package fingerprint is the one way the operator tells whether something
// changed without keeping the thing itself: a SHA-256 over the parts joined
// by NUL bytes, hex-encoded. Parts are text (spec fields, settings, PEM,
// passwords); none contains a NUL where the boundary between parts matters.
// It is used for spec templates (the instances' user.rsf.template, so its
// value must stay stable across releases), runtime settings, cached
// connections and credentials.
package fingerprint

import (
	"crypto/sha256"
	"encoding/hex"
	"maps"
	"slices"
	"strings"
)

// Strings fingerprints the parts, in order.
func Strings(parts ...string) string {
	sum := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return hex.EncodeToString(sum[:])
}

// Map fingerprints a map's keys and values, in key order.
func Map(m map[string]string) string {
	parts := make([]string, 0, 2*len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, k, m[k])
	}
	return Strings(parts...)
}
