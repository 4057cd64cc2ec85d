package render

import (
	"strings"
	"testing"

	"github.com/incusops/redis-sentinel-operator/internal/endpoint"
)

// go test -fuzz=FuzzRedisConf ./internal/render/
//
// secret is the masterauth and a user's password; name is that user's
// name and the masteruser; rule is one more of its rules.
func FuzzRedisConf(f *testing.F) {
	for _, s := range nastyStrings {
		f.Add(s, "backend", "+get", "1gb", "10.42.0.11", false)
		f.Add("pw", s, "+get", s, "10.42.0.11", true)
		f.Add("pw", "backend", s, "100mb", s, true)
		f.Add(s, s, s, "1gb", "10.42.0.11", false)
		f.Add("pw", "backend", "~"+s, "1gb", "10.42.0.11", false)
		f.Add("pw", "backend", "&"+s, "1gb", "10.42.0.11", false)
	}
	f.Add("pw", "default", "+get", "0", "127.0.0.1", false)
	f.Add("pw", "rsf-admin", "%RW~k:*", "999999999999999GB", "::ffff:10.0.0.1", true)
	f.Add("pw", "a.b_c-9", ">pw", "1k", "fd00::1", false)
	f.Fuzz(func(t *testing.T, secret, name, rule, maxmemory, address string, replica bool) {
		r := typicalRedis()
		r.MasterAuth = secret
		r.MasterUser = name
		r.Users[4].Name = name
		r.Users[4].Passwords = []string{secret, "other"}
		r.Users[4].Rules = append(r.Users[4].Rules, rule)
		r.Maxmemory = maxmemory
		r.Address = address
		if replica {
			r.ReplicaOf = &endpoint.Endpoint{Host: "10.42.0.10", Port: 6379}
			// The TLS paths are the operator's constants; hostile ones
			// must still stay within their directives.
			r.TLS = &TLS{CAFile: secret, MemberFile: rule, AuthClients: true}
		}
		checkRedisRoundTrip(t, r)
	})
}

// go test -fuzz=FuzzSentinelConf ./internal/render/
func FuzzSentinelConf(f *testing.F) {
	for _, s := range nastyStrings {
		f.Add(s, "auth-pw", "rsf-peer", "+ping", "mymaster", "10.42.0.11")
		f.Add("peer-pw", s, "rsf-peer", "+ping", "mymaster", "10.42.0.11")
		f.Add("peer-pw", "auth-pw", s, "+ping", "mymaster", "10.42.0.11")
		f.Add("peer-pw", "auth-pw", "rsf-peer", s, "mymaster", "10.42.0.11")
		f.Add("peer-pw", "auth-pw", "rsf-peer", "+ping", s, "10.42.0.11")
		f.Add("peer-pw", "auth-pw", "rsf-peer", "+ping", "mymaster", s)
		f.Add(s, s, s, s, s, s)
	}
	f.Add("PLACEHOLDER-PEER-PASSWORD", "x", "PLACEHOLDER-AUTH-PASS", "&PLACEHOLDER-PEER-PASSWORD", "PLACEHOLDER-PEER-PASSWORD", "::1")
	f.Add(strings.Repeat("~", 512), "p\\a$s#w{o}r|d;x`", "a.b-c_d", "+sentinel|get-master-addr-by-name", "a.b-c_d", "127.0.0.1")
	f.Fuzz(func(t *testing.T, peerPassword, authPass, name, rule, masterName, address string) {
		s := typicalSentinel()
		s.PeerPassword = peerPassword
		s.AuthPass = authPass
		s.PeerUser = name
		s.AuthUser = name
		s.Users[2].Name = name
		s.Users[2].Passwords = []string{peerPassword}
		s.Users[2].Rules = append(s.Users[2].Rules, rule)
		s.MasterName = masterName
		s.Address = address
		s.KnownReplicas[1].Host = address
		s.KnownSentinels[1].Address.Host = address
		if len(masterName)%2 == 1 {
			s.TLS = &TLS{CAFile: rule, MemberFile: name}
		}
		checkSentinelRoundTrip(t, s)
	})
}
