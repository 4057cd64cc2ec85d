package acl

// DiscoveryRules are what a backend's Sentinel client may do on a sentinel:
// find the master and its replicas, and hear of switches. PROVISIONAL: to be
// replaced by the exact list recorded from go-redis and redis-py.
var DiscoveryRules = []string{"-@all", "+ping", "+hello", "+auth", "+client|setname", "+sentinel|get-master-addr-by-name",
	"+sentinel|sentinels", "+sentinel|replicas", "+sentinel|slaves", "+sentinel|masters", "+sentinel|master", "+subscribe", "+psubscribe", "+unsubscribe", "+punsubscribe", "&*"}
