package chaos

import (
	"encoding/base64"
	"encoding/json"
	"net/url"
	"strings"
	"testing"
)

// TestLeakWatchForms checks the leak watch itself (no stack needed): every
// encoded form of a password is found, also inside longer text, and text
// without it yields nothing.
func TestLeakWatchForms(t *testing.T) {
	pw := newPassword("pw")
	other := newPassword("pw")
	l := &leakWatch{known: map[string]bool{}, index: map[uint64][]leakNeedle{}, reported: map[string]bool{}, errs: map[string]struct{}{}}
	l.addSecret(pw)
	l.addSecret("short") // ignored
	u := url.URL{Scheme: "redis", User: url.UserPassword("backend", pw), Host: "10.0.0.1:6379"}
	jsonPW, _ := json.Marshal(`x"` + pw)
	texts := map[string]string{
		"plain":                 "msg=" + pw + " end",
		"JSON":                  string(jsonPW),
		"query":                 "a=1&pw=" + url.QueryEscape(pw),
		"path":                  "/p/" + url.PathEscape(pw) + "/x",
		"REDIS_URL":             u.String(),
		"base64 std padded":     base64.StdEncoding.EncodeToString([]byte(pw)),
		"base64 std raw":        base64.RawStdEncoding.EncodeToString([]byte(pw)),
		"base64 url padded":     base64.URLEncoding.EncodeToString([]byte(pw)),
		"base64 url raw":        base64.RawURLEncoding.EncodeToString([]byte(pw)),
		"base64 offset 1":       base64.StdEncoding.EncodeToString([]byte("x" + pw + "y")),
		"base64 offset 2":       base64.StdEncoding.EncodeToString([]byte("xy" + pw + "yz")),
		"base64 url offset 1":   base64.URLEncoding.EncodeToString([]byte("{" + pw)),
		"base64 of a REDIS_URL": `{"data":{"REDIS_URL":"` + base64.StdEncoding.EncodeToString([]byte(u.String())) + `"}}`,
		"base64 of a Secret":    base64.StdEncoding.EncodeToString([]byte(`{"password":"` + pw + `"}`)),
	}
	for name, text := range texts {
		before := len(l.findings)
		l.check(name, text)
		if len(l.findings) == before {
			t.Errorf("%s: %q not found as a leak", name, text)
		}
		for _, f := range l.findings[before:] {
			if strings.Contains(f, pw) {
				t.Errorf("%s: the finding quotes the password: %s", name, f)
			}
		}
	}
	for _, clean := range []string{other, base64.StdEncoding.EncodeToString([]byte(other)), url.QueryEscape(other), "", "short"} {
		before := len(l.findings)
		l.check("clean", clean)
		if len(l.findings) != before {
			t.Errorf("a text without the password gave findings: %v", l.findings[before:])
		}
	}
	if n, forms := l.counts(); n != 1 || forms < 10 {
		t.Errorf("%d passwords in %d forms, want 1 in at least 10", n, forms)
	}
}
