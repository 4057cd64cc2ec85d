package controllers

import (
	"strconv"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
)

// A member's container records the ports its servers were configured with,
// so that every pass (and a restarted operator) reaches each member where
// it listens while a change of spec.redis.port or sentinelPort rolls.
//
// A port change rebuilds the member (replaceOutdated, replicas first, the
// master last after a planned failover), like an image change, rather than
// rewriting the ports into the running member and restarting its units:
//   - the rebuild is the rollout the operator already runs and tests, every
//     step of it; a restart in place would be a second rollout;
//   - sentinel.conf belongs to Sentinel once it runs (its peers, replicas,
//     epochs and id): a new port would have to be edited into a file
//     Sentinel rewrites, and the master's port cannot change in place
//     without the sentinels seeing it down, so the master needs the planned
//     failover either way;
//   - what a restart would save is measured in seconds: on the lab host a
//     container's delete, create and boot take about 6 s, a redis-server
//     restart well under 1 s; the whole roll of 3 members took 28-56 s under
//     a WAIT-1 writer, with one master switch and a longest write gap of
//     1.2-1.5 s (test/e2e/livechange_test.go, three runs), for a change made
//     once in a formation's life.
//
// Either way the other sentinels keep the member's old replica and
// sentinel entries, which a SENTINEL RESET removes once the set is whole
// again (topology.Input.LastRebuild).
const (
	keyRedisPort    = "user.rsf.redis-port"
	keySentinelPort = "user.rsf.sentinel-port"
)

// ports are a member's redis-server and sentinel ports.
type ports struct{ redis, sentinel int }

func specPorts(f *redisv1alpha1.RedisSentinelFormation) ports {
	return ports{redis: int(f.Spec.Redis.Port), sentinel: int(f.Spec.Redis.SentinelPort)}
}

// portKeys are the instance config keys recording p.
func portKeys(p ports) map[string]string {
	return map[string]string{keyRedisPort: strconv.Itoa(p.redis), keySentinelPort: strconv.Itoa(p.sentinel)}
}

// memberPorts are the ports m's servers listen on: those its container
// records, else those status recorded for it (a container built before the
// keys existed), else the spec's.
func memberPorts(f *redisv1alpha1.RedisSentinelFormation, m *memberObs) ports {
	if m.instance != nil {
		r, rerr := strconv.Atoi(m.instance.Config[keyRedisPort])
		s, serr := strconv.Atoi(m.instance.Config[keySentinelPort])
		if rerr == nil && serr == nil {
			return ports{redis: r, sentinel: s}
		}
	}
	if st := findMember(f.Status.Members, m.name); st != nil && st.RedisPort != 0 && st.SentinelPort != 0 {
		return ports{redis: int(st.RedisPort), sentinel: int(st.SentinelPort)}
	}
	return specPorts(f)
}
