package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// secret is used as every password in these tests; no error or log line may
// contain it, nor a recognisable piece of it.
const secret = "s3cr3t-Pa55w0rd"

func secretFragments() []string {
	return []string{secret, "s3cr3t", "Pa55w0rd", "Pa55", "w0rd"}
}

func assertNoSecret(t *testing.T, what, s string) {
	t.Helper()
	for _, frag := range secretFragments() {
		if strings.Contains(s, frag) {
			t.Fatalf("%s leaks the secret (fragment %q): %s", what, frag, s)
		}
	}
}

func TestFromMap(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		want    Redis
		wantErr []string // substrings the error must contain
	}{
		{
			name: "single instance",
			env:  map[string]string{EnvURL: "redis://:" + secret + "@cache.local:6380/2"},
			want: Redis{
				URL: "redis://:" + secret + "@cache.local:6380/2", Network: "tcp",
				Addr: "cache.local:6380", Password: secret, DB: 2,
			},
		},
		{
			name: "single instance, default port and db, user",
			env:  map[string]string{EnvURL: " redis://app:" + secret + "@localhost "},
			want: Redis{
				URL: "redis://app:" + secret + "@localhost", Network: "tcp",
				Addr: "localhost:6379", Username: "app", Password: secret,
			},
		},
		{
			name: "rediss sets TLS",
			env:  map[string]string{EnvURL: "rediss://h:6379/0"},
			want: Redis{URL: "rediss://h:6379/0", Network: "tcp", Addr: "h:6379", TLS: true},
		},
		{
			name: "percent-encoded password",
			env:  map[string]string{EnvURL: "redis://:a%2Fb%40c@h:6379/0"},
			want: Redis{URL: "redis://:a%2Fb%40c@h:6379/0", Network: "tcp", Addr: "h:6379", Password: "a/b@c"},
		},
		{
			name: "sentinel mode: csv trimmed, empties and duplicates dropped, password and db from URL",
			env: map[string]string{
				EnvURL:              "redis://:" + secret + "@dummy:6379/3",
				EnvSentinelAddrs:    " 10.0.0.1:26379, ,10.0.0.2:26379,,10.0.0.1:26379 , [::1]:26380,",
				EnvMasterName:       "mymaster",
				EnvSentinelPassword: secret + "-s",
			},
			want: Redis{
				URL: "redis://:" + secret + "@dummy:6379/3", Network: "tcp", Addr: "dummy:6379",
				Password: secret, DB: 3,
				SentinelAddrs:    []string{"10.0.0.1:26379", "10.0.0.2:26379", "[::1]:26380"},
				MasterName:       "mymaster",
				SentinelPassword: secret + "-s",
			},
		},
		{
			name: "sentinel mode with an ACL user on the sentinels (trimmed) and one in REDIS_URL",
			env: map[string]string{
				EnvURL:              "redis://app:" + secret + "@dummy:6379/0",
				EnvSentinelAddrs:    "10.0.0.1:26379",
				EnvMasterName:       "mymaster",
				EnvSentinelUsername: " app ",
				EnvSentinelPassword: secret + "-s",
			},
			want: Redis{
				URL: "redis://app:" + secret + "@dummy:6379/0", Network: "tcp", Addr: "dummy:6379",
				Username: "app", Password: secret,
				SentinelAddrs:    []string{"10.0.0.1:26379"},
				MasterName:       "mymaster",
				SentinelUsername: "app",
				SentinelPassword: secret + "-s",
			},
		},
		{
			name: "a sentinel user in single-instance mode is ignored, like the sentinel password",
			env:  map[string]string{EnvURL: "redis://h:1/0", EnvSentinelUsername: "app"},
			want: Redis{URL: "redis://h:1/0", Network: "tcp", Addr: "h:1", SentinelUsername: "app"},
		},
		{
			name:    "sentinel user without a sentinel password",
			env:     map[string]string{EnvSentinelAddrs: "h:26379", EnvMasterName: "m", EnvSentinelUsername: "app"},
			wantErr: []string{EnvSentinelUsername, EnvSentinelPassword, "needs its password"},
		},
		{
			name: "sentinel user with whitespace is not echoed",
			env: map[string]string{
				EnvSentinelAddrs: "h:26379", EnvMasterName: "m",
				EnvSentinelUsername: "app " + secret, EnvSentinelPassword: "x",
			},
			wantErr: []string{EnvSentinelUsername, "whitespace", "not shown"},
		},
		{
			name: "sentinel user with a control character",
			env: map[string]string{
				EnvSentinelAddrs: "h:26379", EnvMasterName: "m",
				EnvSentinelUsername: "app\x00", EnvSentinelPassword: "x",
			},
			wantErr: []string{EnvSentinelUsername, "control"},
		},
		{
			name: "sentinel mode without REDIS_URL",
			env:  map[string]string{EnvSentinelAddrs: "s1:26379", EnvMasterName: "m"},
			want: Redis{Network: "tcp", SentinelAddrs: []string{"s1:26379"}, MasterName: "m"},
		},
		{
			name: "only commas means single-instance mode",
			env:  map[string]string{EnvSentinelAddrs: " , ,", EnvURL: "redis://h:1/0"},
			want: Redis{URL: "redis://h:1/0", Network: "tcp", Addr: "h:1"},
		},
		{
			name:    "nothing set",
			env:     map[string]string{},
			wantErr: []string{EnvURL, "required"},
		},
		{
			name:    "sentinel entry without port",
			env:     map[string]string{EnvSentinelAddrs: "10.0.0.1", EnvMasterName: "m"},
			wantErr: []string{EnvSentinelAddrs, "entry 1", `"10.0.0.1"`, "host:port"},
		},
		{
			name:    "sentinel port 0",
			env:     map[string]string{EnvSentinelAddrs: "a:26379,b:0", EnvMasterName: "m"},
			wantErr: []string{EnvSentinelAddrs, "entry 2", "1..65535"},
		},
		{
			name:    "sentinel port 99999",
			env:     map[string]string{EnvSentinelAddrs: "b:99999", EnvMasterName: "m"},
			wantErr: []string{EnvSentinelAddrs, "1..65535"},
		},
		{
			name:    "sentinel port not a number",
			env:     map[string]string{EnvSentinelAddrs: "b:http", EnvMasterName: "m"},
			wantErr: []string{EnvSentinelAddrs, "1..65535"},
		},
		{
			name:    "sentinel port with sign",
			env:     map[string]string{EnvSentinelAddrs: "b:+80", EnvMasterName: "m"},
			wantErr: []string{EnvSentinelAddrs, "1..65535"},
		},
		{
			name:    "sentinel missing host",
			env:     map[string]string{EnvSentinelAddrs: ":26379", EnvMasterName: "m"},
			wantErr: []string{EnvSentinelAddrs, "missing host"},
		},
		{
			name:    "sentinel empty port",
			env:     map[string]string{EnvSentinelAddrs: "h:", EnvMasterName: "m"},
			wantErr: []string{EnvSentinelAddrs, "missing port"},
		},
		{
			name: "sentinel entry that is a URL with a password is not echoed",
			env: map[string]string{
				EnvSentinelAddrs: "redis://:" + secret + "@h:26379", EnvMasterName: "m",
			},
			wantErr: []string{EnvSentinelAddrs, "entry 1", redacted},
		},
		{
			name:    "master name missing with addrs set",
			env:     map[string]string{EnvSentinelAddrs: "h:26379", EnvURL: "redis://:" + secret + "@d:6379/0"},
			wantErr: []string{EnvMasterName, "required"},
		},
		{
			name:    "master name invalid",
			env:     map[string]string{EnvSentinelAddrs: "h:26379", EnvMasterName: "my master"},
			wantErr: []string{EnvMasterName, "invalid"},
		},
		{
			name:    "unparsable URL with password",
			env:     map[string]string{EnvURL: "redis://:" + secret + "@h:6379/0\x7f"},
			wantErr: []string{EnvURL, "not a parsable URL"},
		},
		{
			name:    "bad percent escape inside the password",
			env:     map[string]string{EnvURL: "redis://:" + secret + "%zzw0rd@h:6379/0"},
			wantErr: []string{EnvURL, "invalid"},
		},
		{
			name:    "bad port in URL",
			env:     map[string]string{EnvURL: "redis://:" + secret + "@h:notaport/0"},
			wantErr: []string{EnvURL, "invalid"},
		},
		{
			name:    "URL port 0",
			env:     map[string]string{EnvURL: "redis://:" + secret + "@h:0/0"},
			wantErr: []string{EnvURL, "1..65535"},
		},
		{
			name:    "URL port 99999",
			env:     map[string]string{EnvURL: "redis://:" + secret + "@h:99999/0"},
			wantErr: []string{EnvURL, "1..65535"},
		},
		{
			name:    "unescaped slash in password lands in the path",
			env:     map[string]string{EnvURL: "redis://:s3cr3t/Pa55w0rd@h:6379/0"},
			wantErr: []string{EnvURL, "path"},
		},
		{
			name:    "wrong scheme",
			env:     map[string]string{EnvURL: "http://:" + secret + "@h:6379/0"},
			wantErr: []string{EnvURL, "scheme"},
		},
		{
			name:    "no scheme",
			env:     map[string]string{EnvURL: secret + "@h:6379"},
			wantErr: []string{EnvURL},
		},
		{
			name:    "db not a number",
			env:     map[string]string{EnvURL: "redis://:" + secret + "@h:6379/zero"},
			wantErr: []string{EnvURL, "database number"},
		},
		{
			name:    "negative db",
			env:     map[string]string{EnvURL: "redis://:" + secret + "@h:6379/-1"},
			wantErr: []string{EnvURL, ">= 0"},
		},
		{
			name:    "unknown query option",
			env:     map[string]string{EnvURL: "redis://:" + secret + "@h:6379/0?frobnicate=" + secret},
			wantErr: []string{EnvURL, "query option"},
		},
		{
			name: "every problem is reported at once",
			env: map[string]string{
				EnvURL:           "redis://:" + secret + "@h:6379/zero",
				EnvSentinelAddrs: "a:0,:1",
			},
			wantErr: []string{EnvURL, EnvSentinelAddrs, "entry 1", "entry 2", EnvMasterName},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { checkFromMap(t, tc.env, tc.want, tc.wantErr) })
	}
}

// checkFromMap runs FromMap on env: it fails with an error holding every
// part of wantErr and no secret (nor any of keys), or returns want.
func checkFromMap(t *testing.T, env map[string]string, want Redis, wantErr []string, keys ...[]byte) {
	t.Helper()
	got, err := FromMap(env)
	if wantErr != nil {
		if err == nil {
			t.Fatalf("FromMap succeeded with %v, want an error", got)
		}
		assertNoSecret(t, "error", err.Error())
		assertNoKey(t, "error", err.Error(), keys...)
		for _, s := range wantErr {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("error %q does not contain %q", err, s)
			}
		}
		return
	}
	if err != nil {
		t.Fatalf("FromMap: %v", err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("FromMap = %s\nwant      %s", fields(got), fields(want))
	}
	if got.SentinelMode() != (len(want.SentinelAddrs) > 0) {
		t.Errorf("SentinelMode() = %v", got.SentinelMode())
	}
}

// fields prints every field, secrets included (test values only): the
// Stringer of Redis would hide the differences.
func fields(r Redis) string {
	return fmt.Sprintf("%q", []any{r.URL, r.Network, r.Addr, r.Username, r.Password, r.DB, r.TLS, r.SentinelAddrs, r.MasterName, r.SentinelUsername, r.SentinelPassword, r.TLSCACert, r.TLSClientCert, r.TLSClientKey})
}

func TestFromEnvSharesTheParser(t *testing.T) {
	env := map[string]string{
		EnvURL:              "redis://:" + secret + "@dummy:6379/1",
		EnvSentinelAddrs:    "127.0.0.1:26379",
		EnvMasterName:       "mymaster",
		EnvSentinelUsername: "app",
		EnvSentinelPassword: secret,
	}
	a, errA := FromEnv(func(k string) string { return env[k] })
	b, errB := FromMap(env)
	if errA != nil || errB != nil {
		t.Fatalf("errors: %v / %v", errA, errB)
	}
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("FromEnv and FromMap disagree")
	}

	for k, v := range env {
		t.Setenv(k, v)
	}
	c, err := FromEnv(nil)
	if err != nil {
		t.Fatalf("FromEnv(nil): %v", err)
	}
	if !reflect.DeepEqual(a, c) {
		t.Fatalf("FromEnv(nil) does not read the process environment")
	}
}

// logOutputs is r as every way of logging it prints it: its Stringer in
// the fmt verbs, logr's MarshalLog (as JSON) and zap.
func logOutputs(t *testing.T, r Redis) map[string]string {
	t.Helper()
	outputs := map[string]string{
		"String": r.String(),
		"%v":     fmt.Sprintf("%v", r),
		"%+v":    fmt.Sprintf("%+v", r),
		"%#v":    fmt.Sprintf("%#v", r),
		"%s ptr": fmt.Sprintf("%s", &r),
	}
	var j bytes.Buffer
	enc := json.NewEncoder(&j)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(r.MarshalLog()); err != nil {
		t.Fatal(err)
	}
	outputs["MarshalLog"] = j.String()

	var buf bytes.Buffer
	core := zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(&buf), zap.DebugLevel)
	zap.New(core).Info("connecting", zap.Object("redis", r), zap.Any("any", r))
	outputs["zap"] = buf.String()
	return outputs
}

func TestLoggingRedacts(t *testing.T) {
	r, err := FromMap(map[string]string{
		EnvURL:              "redis://app:" + secret + "@dummy:6379/4",
		EnvSentinelAddrs:    "127.0.0.1:26379,127.0.0.2:26379",
		EnvMasterName:       "mymaster",
		EnvSentinelUsername: "discovery",
		EnvSentinelPassword: secret,
	})
	if err != nil {
		t.Fatal(err)
	}

	for name, out := range logOutputs(t, r) {
		assertNoSecret(t, name, out)
		for _, want := range []string{"sentinel", "mymaster", "127.0.0.2:26379", "discovery", redacted} {
			if !strings.Contains(out, want) {
				t.Errorf("%s output %q lacks %q", name, out, want)
			}
		}
	}
	if got := r.String(); got != "redis{mode=sentinel master=mymaster sentinels=[127.0.0.1:26379,127.0.0.2:26379] db=4 user=app password=<redacted> sentinel_user=discovery sentinel_password=<redacted>}" {
		t.Errorf("String() = %s", got)
	}

	single, err := FromMap(map[string]string{EnvURL: "redis://h:7/0"})
	if err != nil {
		t.Fatal(err)
	}
	if got := single.String(); got != "redis{mode=single addr=h:7 db=0}" {
		t.Errorf("String() = %s", got)
	}
}

// TestEnvDocumented keeps docs/ENV_VARIABLES.md in step with the code.
func TestEnvDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/ENV_VARIABLES.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range Keys() {
		if !bytes.Contains(doc, []byte("`"+k+"`")) {
			t.Errorf("docs/ENV_VARIABLES.md does not document %s", k)
		}
	}
}
