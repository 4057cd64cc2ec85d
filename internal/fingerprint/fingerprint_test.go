package fingerprint

import "testing"

func TestFingerprints(t *testing.T) {
	tests := []struct {
		name string
		a, b string
		same bool
	}{
		{"same parts", Strings("a", "b"), Strings("a", "b"), true},
		{"bytes moved between parts", Strings("ab", "c"), Strings("a", "bc"), false},
		{"order matters", Strings("a", "b"), Strings("b", "a"), false},
		{"empty part counts", Strings("a"), Strings("a", ""), false},
		{"map order does not matter", Map(map[string]string{"x": "1", "y": "2"}), Map(map[string]string{"y": "2", "x": "1"}), true},
		{"map value changes it", Map(map[string]string{"x": "1"}), Map(map[string]string{"x": "2"}), false},
		{"map key and value are separate parts", Map(map[string]string{"ab": "c"}), Map(map[string]string{"a": "bc"}), false},
	}
	for _, tt := range tests {
		if (tt.a == tt.b) != tt.same {
			t.Errorf("%s: %s vs %s, want same=%v", tt.name, tt.a, tt.b, tt.same)
		}
	}
}

// The instances of running formations carry template digests computed
// with this function: a different value after an upgrade would make the
// operator rebuild every member.
func TestStringsIsStable(t *testing.T) {
	got := Strings("rsf-redis7-bookworm-v1", "rsf-redis", "rsfbr0", "rsf", "default", "", "", "")[:16]
	// The value the operator computed before this package existed.
	if want := "1ad471dee9079dfd"; got != want {
		t.Errorf("template digest of the default spec %s, want %s", got, want)
	}
	if len(Strings("x")) != 64 {
		t.Errorf("fingerprint length %d, want 64 hex digits", len(Strings("x")))
	}
}
