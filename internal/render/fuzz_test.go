package render

import (
	"strings"
	"testing"

	"github.com/incusops/redis-sentinel-operator/internal/endpoint"
)

// go test -fuzz=FuzzRedisConf ./internal/render/
func FuzzRedisConf(f *testing.F) {
	for _, s := range nastyStrings {
		f.Add(s, "1gb", "10.42.0.11", false)
		f.Add("pw", s, "10.42.0.11", true)
		f.Add(s, "100mb", s, true)
	}
	f.Add("pw", "0", "127.0.0.1", false)
	f.Add("pw", "999999999999999GB", "::ffff:10.0.0.1", true)
	f.Add("pw", "1k", "fd00::1", false)
	f.Fuzz(func(t *testing.T, password, maxmemory, address string, replica bool) {
		r := typicalRedis()
		r.Password = password
		r.Maxmemory = maxmemory
		r.Address = address
		if replica {
			r.ReplicaOf = &endpoint.Endpoint{Host: "10.42.0.10", Port: 6379}
		}
		checkRedisRoundTrip(t, r)
	})
}

// go test -fuzz=FuzzSentinelConf ./internal/render/
func FuzzSentinelConf(f *testing.F) {
	for _, s := range nastyStrings {
		f.Add(s, "redis-pw", "mymaster", "10.42.0.11")
		f.Add("sentinel-pw", s, "mymaster", "10.42.0.11")
		f.Add("sentinel-pw", "redis-pw", s, "10.42.0.11")
		f.Add("sentinel-pw", "redis-pw", "mymaster", s)
		f.Add(s, s, s, s)
	}
	f.Add("PLACEHOLDER-PASSWORD", "x", "PLACEHOLDER-PASSWORD", "::1")
	f.Add(strings.Repeat("~", 512), "p\\a$s#w{o}r|d;x`", "a.b-c_d", "127.0.0.1")
	f.Fuzz(func(t *testing.T, password, redisPassword, masterName, address string) {
		s := typicalSentinel()
		s.Password = password
		s.RedisPassword = redisPassword
		s.MasterName = masterName
		s.Address = address
		s.KnownReplicas[1].Host = address
		checkSentinelRoundTrip(t, s)
	})
}
