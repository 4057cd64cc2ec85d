package passwords

import (
	"errors"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	cases := []struct {
		name     string
		password string
		strict   bool
		want     error
	}{
		{"empty in the lab", "", false, ErrEmpty},
		{"lab placeholder accepted in the lab", "lab-only-redis-password-change-me", false, nil},
		{"short accepted in the lab", "pw", false, nil},
		{"space refused everywhere", "two words", false, ErrCharset},
		{"newline refused everywhere", "a\nrequirepass x", false, ErrCharset},
		{"quote refused everywhere", `pw"x`, false, ErrCharset},
		{"backslash refused everywhere", `pw\x`, false, ErrCharset},
		{"non-ASCII refused everywhere", "pässwört-0123456789", false, ErrCharset},
		{"placeholder refused outside the lab", "lab-only-redis-password-change-me", true, ErrPlaceholder},
		{"vault template refused", "<random 32-char>", true, ErrCharset},
		{"example refused", "Example-0123456789abcdef", true, ErrPlaceholder},
		{"short refused outside the lab", "k9#Qz!w2", true, ErrWeak},
		{"trivial refused outside the lab", "abababababababababab", true, ErrWeak},
		{"random accepted outside the lab", "q8Z1vN4kT7yR2mW9xL5cB3", true, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := Check(tc.password, tc.strict)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Check = %v, want %v", err, tc.want)
			}
			if err != nil && tc.password != "" && strings.Contains(err.Error(), tc.password) {
				t.Fatalf("the error quotes the password: %v", err)
			}
		})
	}
}

// FuzzCheck: the policy never panics, never quotes the password, and a
// password it accepts never contains what Sentinel cannot store.
func FuzzCheck(f *testing.F) {
	for _, seed := range []string{"", "a", "lab-only-change-me", "q8Z1vN4kT7yR2mW9xL5cB3", "a b", "\x00", "\"", "é"} {
		f.Add(seed, true)
		f.Add(seed, false)
	}
	f.Fuzz(func(t *testing.T, password string, strict bool) {
		err := Check(password, strict)
		if err != nil {
			if len(password) > 3 && strings.Contains(err.Error(), password) {
				t.Fatalf("error quotes the password")
			}
			return
		}
		if strings.ContainsAny(password, " \t\r\n\"'\\") {
			t.Fatalf("accepted a password Sentinel cannot store: %q", password)
		}
		if strict && len(password) < MinLength {
			t.Fatalf("accepted a short password outside the lab")
		}
	})
}

func TestGeneratePassesTheStrictPolicyAndDiffers(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		p, err := Generate()
		if err != nil {
			t.Fatal(err)
		}
		if err := Check(p, true); err != nil {
			t.Fatalf("generated password refused: %v", err)
		}
		if seen[p] {
			t.Fatal("the same password was generated twice")
		}
		seen[p] = true
	}
}
