package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Environment says how strictly the operator treats credentials.
// +kubebuilder:validation:Enum=lab;staging;production
type Environment string

const (
	EnvironmentLab        Environment = "lab"
	EnvironmentStaging    Environment = "staging"
	EnvironmentProduction Environment = "production"
)

// MaxmemoryPolicy is one of Redis's eight eviction policies.
// +kubebuilder:validation:Enum=noeviction;allkeys-lru;allkeys-lfu;allkeys-random;volatile-lru;volatile-lfu;volatile-random;volatile-ttl
type MaxmemoryPolicy string

// AppendFsync is Redis's appendfsync setting.
// +kubebuilder:validation:Enum=always;everysec;no
type AppendFsync string

// Engine is the server software every member runs.
// +kubebuilder:validation:Enum=redis;valkey
type Engine string

const (
	// EngineRedis is Redis 7 from Debian bookworm.
	EngineRedis Engine = "redis"
	// EngineValkey is Valkey 8 from Debian bookworm-backports.
	EngineValkey Engine = "valkey"
)

// RedisSentinelFormationSpec declares a Redis primary with replicas and one
// Sentinel co-located with each redis-server, one Incus container per member.
//
// A quorum that is not a majority of the sentinels lets a minority partition
// promote a second master, so it needs an explicit opt-in.
// +kubebuilder:validation:XValidation:rule="self.quorum <= self.members",message="spec.quorum must not exceed spec.members",fieldPath=".quorum"
// +kubebuilder:validation:XValidation:rule="self.quorum * 2 > self.members || (has(self.allowMinorityQuorum) && self.allowMinorityQuorum)",message="spec.quorum is below a majority of spec.members, which allows split brain; set spec.allowMinorityQuorum to accept that",fieldPath=".quorum"
// +kubebuilder:validation:XValidation:rule="!has(self.redis.minReplicasToWrite) || self.redis.minReplicasToWrite < self.members",message="spec.redis.minReplicasToWrite must be below spec.members, or no master could ever accept writes",fieldPath=".redis.minReplicasToWrite"
// +kubebuilder:validation:XValidation:rule="!has(self.incus.targets) || size(self.incus.targets) == 0 || size(self.incus.targets) >= self.members",message="spec.incus.targets must name a placement target for every member when set",fieldPath=".incus.targets"
// +kubebuilder:validation:XValidation:rule="!has(self.incus.targets) || size(self.incus.targets) == 0 || !has(self.incus.placement) || !has(self.incus.placement.group)",message="spec.incus.targets and spec.incus.placement.group exclude each other: explicit targets already say where each member goes",fieldPath=".incus.placement.group"
// +kubebuilder:validation:XValidation:rule="!has(self.incus.targets) || (has(self.incus.placement) && self.incus.placement.spread == 'Preferred') || self.incus.targets.all(t, self.incus.targets.exists_one(u, u == t))",message="spec.incus.targets names a cluster member twice while spec.incus.placement.spread is Required; name distinct members or set spread to Preferred",fieldPath=".incus.targets"
// +kubebuilder:validation:XValidation:rule="self.sentinel.parallelSyncs < self.members",message="spec.sentinel.parallelSyncs must be below spec.members",fieldPath=".sentinel.parallelSyncs"
// +kubebuilder:validation:XValidation:rule="!has(self.redis.minReplicasToWrite) || self.redis.minReplicasToWrite == 0 || self.redis.minReplicasMaxLagSeconds * 1000 < self.sentinel.downAfterMilliseconds",message="spec.redis.minReplicasMaxLagSeconds must be shorter than spec.sentinel.downAfterMilliseconds: an isolated master must stop taking writes before the others can promote a new one",fieldPath=".redis.minReplicasMaxLagSeconds"
// +kubebuilder:validation:XValidation:rule="!has(oldSelf.engine) || !has(self.engine) || self.engine == oldSelf.engine || self.engine == 'valkey'",message="spec.engine cannot go back from valkey to redis: Redis 7 cannot load the data of Valkey 8 (RDB format 11), so no member could replicate from a Valkey master; create a Redis formation and move the data instead",fieldPath=".engine"
// +kubebuilder:validation:XValidation:rule="(has(self.tls) && self.tls.enabled) == (has(oldSelf.tls) && oldSelf.tls.enabled)",message="spec.tls.enabled cannot be changed on a formation: backends would have to switch to or from TLS at the same moment as every member; create a formation with the new setting and move the backends over",fieldPath=".tls"
// +kubebuilder:validation:XValidation:rule="(has(self.tls) && self.tls.enabled && has(self.tls.clientAuth) ? self.tls.clientAuth : 'None') == (has(oldSelf.tls) && oldSelf.tls.enabled && has(oldSelf.tls.clientAuth) ? oldSelf.tls.clientAuth : 'None')",message="spec.tls.clientAuth cannot be changed on a formation: backends would have to start presenting certificates at the same moment as every member; create a formation with the new setting and move the backends over",fieldPath=".tls.clientAuth"
type RedisSentinelFormationSpec struct {
	// MasterName is the name Sentinel monitors the primary under; backends
	// pass it to their FailoverClient.
	// +kubebuilder:default=mymaster
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9][A-Za-z0-9._-]*$`
	// +optional
	MasterName string `json:"masterName,omitempty"`

	// Engine is the server every member runs: redis (Redis 7) or valkey
	// (Valkey 8), each from its own image (spec.incus.image unset). Changing
	// redis to valkey migrates a running formation member by member, the
	// master last after a planned switchover, without losing acknowledged
	// writes; the way back is refused.
	// +kubebuilder:default=redis
	// +optional
	Engine Engine `json:"engine,omitempty"`

	// Members is the number of containers, each running one redis-server
	// and one redis-sentinel. Odd so that sentinels always have a majority.
	// +kubebuilder:default=3
	// +kubebuilder:validation:Minimum=3
	// +kubebuilder:validation:Maximum=7
	// +kubebuilder:validation:XValidation:rule="self % 2 == 1",message="spec.members must be odd (3, 5 or 7)"
	// +optional
	Members int32 `json:"members,omitempty"`

	// Quorum is the number of sentinels that must agree the master is down
	// before a failover starts.
	// +kubebuilder:default=2
	// +kubebuilder:validation:Minimum=1
	// +optional
	Quorum int32 `json:"quorum,omitempty"`

	// AllowMinorityQuorum accepts a quorum that is not a majority of the
	// members. A minority quorum lets an isolated minority start a failover.
	// +optional
	AllowMinorityQuorum bool `json:"allowMinorityQuorum,omitempty"`

	// Sentinel holds Sentinel's failure detection and failover settings.
	// +kubebuilder:default={}
	// +optional
	Sentinel SentinelSpec `json:"sentinel,omitempty"`

	// Redis holds the redis-server settings.
	// +kubebuilder:default={}
	// +optional
	Redis RedisSpec `json:"redis,omitempty"`

	// Auth names the Secrets holding the data-plane and Sentinel passwords.
	Auth AuthSpec `json:"auth"`

	// Environment decides how strictly passwords are checked: outside lab,
	// placeholder and weak passwords are refused. Only lab trusts the
	// user to know what they do.
	// +kubebuilder:default=production
	// +optional
	Environment Environment `json:"environment,omitempty"`

	// Incus says where and from what the member containers are created.
	// +kubebuilder:default={}
	// +optional
	Incus IncusSpec `json:"incus,omitempty"`

	// TLS encrypts every link of the formation; off when unset.
	// +optional
	TLS *TLSSpec `json:"tls,omitempty"`
}

// SentinelSpec holds Sentinel's timing settings. They are applied to running
// sentinels with SENTINEL SET.
type SentinelSpec struct {
	// DownAfterMilliseconds is how long a master must be unreachable before
	// a sentinel considers it subjectively down.
	// +kubebuilder:default=5000
	// +kubebuilder:validation:Minimum=1000
	// +kubebuilder:validation:Maximum=600000
	// +optional
	DownAfterMilliseconds int32 `json:"downAfterMilliseconds,omitempty"`

	// FailoverTimeoutMilliseconds bounds a failover; Sentinel also waits
	// twice this long before retrying a failed one.
	// +kubebuilder:default=30000
	// +kubebuilder:validation:Minimum=3000
	// +kubebuilder:validation:Maximum=3600000
	// +optional
	FailoverTimeoutMilliseconds int32 `json:"failoverTimeoutMilliseconds,omitempty"`

	// ParallelSyncs is how many replicas resync from a new master at once.
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=6
	// +optional
	ParallelSyncs int32 `json:"parallelSyncs,omitempty"`

	// FastFailover lets the operator fail over as soon as Incus reports the
	// master's container stopped, instead of waiting down-after for the
	// sentinels to notice: a stopped container cannot be a live master.
	// It asks a sentinel for SENTINEL FAILOVER only when a replica was
	// linked and caught up when the master was last seen and a majority
	// of sentinels answers. A master whose container runs (a partition, a
	// hung process) is always left to Sentinel.
	// +kubebuilder:default=true
	// +optional
	FastFailover *bool `json:"fastFailover,omitempty"`
}

// RedisSpec holds redis-server settings.
// +kubebuilder:validation:XValidation:rule="!has(self.port) || !has(self.sentinelPort) || self.port != self.sentinelPort",message="spec.redis.port and spec.redis.sentinelPort must differ",fieldPath=".sentinelPort"
type RedisSpec struct {
	// Port is redis-server's port.
	// +kubebuilder:default=6379
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	// +optional
	Port int32 `json:"port,omitempty"`

	// SentinelPort is redis-sentinel's port.
	// +kubebuilder:default=26379
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	// +optional
	SentinelPort int32 `json:"sentinelPort,omitempty"`

	// Maxmemory is the hard cap on the dataset, in Redis's notation:
	// bytes, or a number with k, kb, m, mb, g or gb.
	// +kubebuilder:default="1gb"
	// +kubebuilder:validation:Pattern=`^[0-9]{1,15}([kKmMgG][bB]?)?$`
	// +optional
	Maxmemory string `json:"maxmemory,omitempty"`

	// MaxmemoryPolicy is the eviction policy once maxmemory is reached.
	// +kubebuilder:default=allkeys-lru
	// +optional
	MaxmemoryPolicy MaxmemoryPolicy `json:"maxmemoryPolicy,omitempty"`

	// Persistence configures AOF and RDB snapshots.
	// +kubebuilder:default={}
	// +optional
	Persistence PersistenceSpec `json:"persistence,omitempty"`

	// MinReplicasToWrite fences split brain: a master that cannot see this
	// many replicas refuses writes. 0 turns the fence off.
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=0
	// +optional
	MinReplicasToWrite *int32 `json:"minReplicasToWrite,omitempty"`

	// MinReplicasMaxLagSeconds is how stale a replica's acknowledgement may
	// be and still count towards MinReplicasToWrite. It must be shorter than
	// the Sentinel down-after time, so that a master cut off from its
	// replicas refuses writes before a new master can be promoted.
	// +kubebuilder:default=2
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=3600
	// +optional
	MinReplicasMaxLagSeconds int32 `json:"minReplicasMaxLagSeconds,omitempty"`
}

// PersistenceSpec configures how the dataset survives a restart. A member
// that restarts empty must never serve as master, so persistence is on by
// default.
type PersistenceSpec struct {
	// AOF is the append-only file.
	// +kubebuilder:default={}
	// +optional
	AOF AOFSpec `json:"aof,omitempty"`

	// RDB is the snapshot schedule.
	// +kubebuilder:default={}
	// +optional
	RDB RDBSpec `json:"rdb,omitempty"`
}

// AOFSpec configures the append-only file.
type AOFSpec struct {
	// Enabled turns the append-only file on.
	// +kubebuilder:default=true
	// +optional
	Enabled *bool `json:"enabled,omitempty"`

	// Fsync is how often the AOF is flushed to disk.
	// +kubebuilder:default=everysec
	// +optional
	Fsync AppendFsync `json:"fsync,omitempty"`
}

// RDBSpec configures RDB snapshots.
type RDBSpec struct {
	// Enabled turns RDB snapshots on.
	// +kubebuilder:default=true
	// +optional
	Enabled *bool `json:"enabled,omitempty"`

	// SavePoints is Redis's "save <seconds> <changes>" schedule: a snapshot
	// is taken when at least Changes keys changed within Seconds. The
	// default takes one a day (nightly) if anything changed.
	// +kubebuilder:default={{seconds: 86400, changes: 1}}
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=8
	// +optional
	SavePoints []RDBSavePoint `json:"savePoints,omitempty"`
}

// RDBSavePoint is one "save <seconds> <changes>" rule.
type RDBSavePoint struct {
	// +kubebuilder:validation:Minimum=1
	Seconds int32 `json:"seconds"`
	// +kubebuilder:validation:Minimum=1
	Changes int32 `json:"changes"`
}

// AuthSpec names the Secrets holding the backend user's passwords and
// says what that user may do. The operator's own users (admin, replication,
// Sentinel's, sentinel-to-sentinel) get passwords it generates into a
// Secret it owns (<name>-internal-credentials); the default user
// is disabled.
type AuthSpec struct {
	// PasswordSecretRef is the backend user's password on the
	// redis-servers: what backends read and write with.
	PasswordSecretRef SecretKeyReference `json:"passwordSecretRef"`

	// SentinelPasswordSecretRef is the backend user's password on the
	// sentinels, where it may only discover the master.
	SentinelPasswordSecretRef SecretKeyReference `json:"sentinelPasswordSecretRef"`

	// BackendUser is the ACL user backends get in the connection Secret.
	// +kubebuilder:default={}
	// +optional
	BackendUser BackendUserSpec `json:"backendUser,omitempty"`
}

// BackendUserSpec is the backends' ACL user on the redis-servers.
// +kubebuilder:validation:XValidation:rule="!has(oldSelf.name) || (has(self.name) && self.name == oldSelf.name)",message="spec.auth.backendUser.name cannot be changed on a formation: backends would be locked out; create a new formation instead",fieldPath=".name"
type BackendUserSpec struct {
	// Name is the user's name.
	// +kubebuilder:default=backend
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^[a-z][a-z0-9_-]*$`
	// +kubebuilder:validation:XValidation:rule="self != 'default' && !self.startsWith('rsf-')",message="'default' and names starting with 'rsf-' are the operator's own users"
	// +optional
	Name string `json:"name,omitempty"`

	// Rules replace the default rule set (every key and channel, every
	// command but the @admin and @dangerous ones) with Redis ACL rules:
	// command rules (+get, -@write, +client|setname), key patterns (~app:*,
	// %R~*), channel patterns (&news:*), allkeys, allchannels, resetkeys,
	// resetchannels, nocommands. Passwords and on/off are the operator's.
	// Rules that would let a backend take a formation over (ACL, CONFIG,
	// REPLICAOF, SHUTDOWN, DEBUG, MODULE, MONITOR, replication, +@admin,
	// +@dangerous, +@all after a narrowing) are refused.
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=128
	// +kubebuilder:validation:items:Pattern=`^([+-]@?[a-z][a-z0-9_|.-]*|~[!-~]+|%R?W?~[!-~]+|&[!-~]+|allkeys|allchannels|resetkeys|resetchannels|nocommands)$`
	// +kubebuilder:validation:XValidation:rule="self.all(r, !r.matches('^[+](@admin|@dangerous|acl|config|replicaof|slaveof|shutdown|debug|module|monitor|sync|psync|replconf|failover|migrate|restore|save|bgsave|bgrewriteaof|cluster|client[|]kill|script[|]kill)([|].*)?$'))",message="spec.auth.backendUser.rules must not grant administrative commands (ACL, CONFIG, REPLICAOF, SHUTDOWN, DEBUG, MODULE, MONITOR, replication, @admin, @dangerous): they would let a backend take the formation over"
	// +kubebuilder:validation:XValidation:rule="!self.exists(r, r == '+@all') || self.exists(r, r == '-@admin') && self.exists(r, r == '-@dangerous')",message="spec.auth.backendUser.rules may grant +@all only together with -@admin and -@dangerous"
	// +listType=atomic
	// +optional
	Rules []string `json:"rules,omitempty"`
}

// SecretKeyReference names one key of a Secret in the formation's namespace.
type SecretKeyReference struct {
	// Name is the Secret's name.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`

	// Key is the key within the Secret.
	// +kubebuilder:default=password
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	// +optional
	Key string `json:"key,omitempty"`
}

// IncusSpec says where the member containers live: on which IncusHost,
// and with what from its allowlist. Host, project and network cannot change
// on a running formation (the containers and their pinned addresses would
// be left behind); image, profiles, storage pool, targets and limits are
// rolled out one member at a time.
// +kubebuilder:validation:XValidation:rule="has(self.hostRef) == has(oldSelf.hostRef) && (!has(self.hostRef) || self.hostRef == oldSelf.hostRef)",message="spec.incus.hostRef cannot be changed on a formation: its containers and data live on the host; create a new formation instead",fieldPath=".hostRef"
type IncusSpec struct {
	// HostRef names the IncusHost the members live on. Unset: the host
	// marked default when the formation is first reconciled (recorded in
	// status.incusHost).
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	// +optional
	HostRef string `json:"hostRef,omitempty"`

	// Image is the alias of the Incus image the containers are created
	// from. Unset: the lab-host playbook's image of spec.engine
	// (rsf-redis7-bookworm-v1 or rsf-valkey8-bookworm-v1). An image whose
	// user.rsf.engine property names another engine is refused.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=255
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9][A-Za-z0-9._/-]*$`
	// +optional
	Image string `json:"image,omitempty"`

	// Profiles are applied to each container in order.
	// +kubebuilder:default={"rsf-redis"}
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MaxLength=63
	// +kubebuilder:validation:items:Pattern=`^[A-Za-z0-9][A-Za-z0-9_.-]*$`
	// +optional
	Profiles []string `json:"profiles,omitempty"`

	// Network is the managed bridge the members' eth0 is attached to; each
	// member's address is pinned on it so it survives restarts and rebuilds.
	// +kubebuilder:default=rsfbr0
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="spec.incus.network cannot be changed on a formation: members' addresses are pinned on it; create a new formation instead"
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9][A-Za-z0-9_.-]*$`
	// +optional
	Network string `json:"network,omitempty"`

	// StoragePool holds the containers' root disks.
	// +kubebuilder:default=rsf
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9][A-Za-z0-9_.-]*$`
	// +optional
	StoragePool string `json:"storagePool,omitempty"`

	// Project is the Incus project the containers are created in.
	// +kubebuilder:default=default
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="spec.incus.project cannot be changed on a formation: its containers and data would be left behind in the old project; create a new formation instead"
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9][A-Za-z0-9_.-]*$`
	// +optional
	Project string `json:"project,omitempty"`

	// Targets places member i (1-based) on cluster member Targets[i-1] of an
	// Incus cluster. Empty: the operator places members (spec.incus.placement).
	// +kubebuilder:validation:MaxItems=7
	// +kubebuilder:validation:items:MaxLength=63
	// +kubebuilder:validation:items:Pattern=`^[A-Za-z0-9][A-Za-z0-9_.-]*$`
	// +optional
	Targets []string `json:"targets,omitempty"`

	// Placement spreads the members over the members of an Incus cluster,
	// so that losing one host costs one member. Ignored on a standalone
	// server.
	// +kubebuilder:default={}
	// +optional
	Placement Placement `json:"placement,omitempty"`

	// Limits caps each container's resources.
	// +optional
	Limits ContainerLimits `json:"limits,omitempty"`
}

// SpreadPolicy says how strictly members are kept on distinct cluster
// members.
// +kubebuilder:validation:Enum=Required;Preferred
type SpreadPolicy string

const (
	// SpreadRequired: a member is only created on a cluster member that
	// holds no other member of the formation; one that cannot be placed so
	// is not created (condition Spread, reason CannotSpread). A member
	// re-created after its host was lost (placement.replaceAfter) is the
	// exception: availability first, reported as not spread.
	SpreadRequired SpreadPolicy = "Required"
	// SpreadPreferred: on a free cluster member when there is one, beside
	// the fewest other members otherwise.
	SpreadPreferred SpreadPolicy = "Preferred"
)

// Placement is where on an Incus cluster members are created, and what
// happens to a member whose cluster member is lost.
// +kubebuilder:validation:XValidation:rule="!has(self.replaceAfter) || self.replaceAfter.matches('^([0-9]+(ms|s|m|h))+$')",message="spec.incus.placement.replaceAfter must be a duration such as 90s, 5m or 1h30m",fieldPath=".replaceAfter"
// +kubebuilder:validation:XValidation:rule="!has(self.replaceAfter) || !self.replaceAfter.matches('^([0-9]+(ms|s|m|h))+$') || duration(self.replaceAfter) >= duration('30s')",message="spec.incus.placement.replaceAfter must be at least 30s: a host that merely restarts would otherwise lose its member (and its data) to a rebuild",fieldPath=".replaceAfter"
type Placement struct {
	// Spread is Required (default) or Preferred.
	// +kubebuilder:default=Required
	// +optional
	Spread SpreadPolicy `json:"spread,omitempty"`

	// Group limits the members to the cluster members of this Incus
	// cluster group (the IncusHost must allow it). Unset: every cluster
	// member.
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9][A-Za-z0-9_.-]*$`
	// +optional
	Group string `json:"group,omitempty"`

	// ReplaceAfter is how long a member whose cluster member went offline
	// waits for it before it is re-created on an online one, as a replica
	// of the current master (never as an empty master). The instance left
	// on the lost host is deleted once that host is back. Unset (default):
	// the member waits for its host.
	// +optional
	ReplaceAfter *metav1.Duration `json:"replaceAfter,omitempty"`
}

// ContainerLimits are Incus resource limits for each member container.
type ContainerLimits struct {
	// CPU is Incus's limits.cpu (a count of CPUs, e.g. "2").
	// +kubebuilder:validation:Pattern=`^[1-9][0-9]{0,3}$`
	// +optional
	CPU string `json:"cpu,omitempty"`

	// Memory is Incus's limits.memory (e.g. "2GiB"). Keep it well above
	// spec.redis.maxmemory: forks for persistence need headroom.
	// +kubebuilder:validation:Pattern=`^[0-9]{1,15}(B|kB|MB|GB|TB|KiB|MiB|GiB|TiB)$`
	// +optional
	Memory string `json:"memory,omitempty"`
}

// FormationPhase is a one-word summary of the formation for humans; tools
// should read the conditions.
// +kubebuilder:validation:Enum=Provisioning;Ready;Degraded;FailingOver;Blocked;Paused
type FormationPhase string

const (
	PhaseProvisioning FormationPhase = "Provisioning"
	PhaseReady        FormationPhase = "Ready"
	PhaseDegraded     FormationPhase = "Degraded"
	PhaseFailingOver  FormationPhase = "FailingOver"
	PhaseBlocked      FormationPhase = "Blocked"
	// PhasePaused: the pause annotation holds every change back.
	PhasePaused FormationPhase = "Paused"
)

// Condition types. Reasons are CamelCase constants beside the code that sets
// them.
const (
	// ConditionReady is true when a master exists, every replica is linked
	// to it and every sentinel reports quorum OK.
	ConditionReady = "Ready"
	// ConditionProgressing is true while the operator is creating,
	// configuring or replacing members.
	ConditionProgressing = "Progressing"
	// ConditionDegraded is true when a member, sentinel or quorum is lost, or
	// the operator cannot reach what it needs.
	ConditionDegraded = "Degraded"
	// ConditionSecretsValid is true when both password Secrets exist, have
	// their keys and pass the environment's password policy.
	ConditionSecretsValid = "SecretsValid"
	// ConditionSpread is true when every member runs on its own member of
	// the Incus cluster, false when two share one (or a member could not
	// be placed); absent on a standalone server.
	ConditionSpread = "Spread"
)

// MemberRole is what a member's redis-server says it is.
// +kubebuilder:validation:Enum=master;replica;unknown
type MemberRole string

const (
	RoleMaster  MemberRole = "master"
	RoleReplica MemberRole = "replica"
	RoleUnknown MemberRole = "unknown"
)

// MemberHealth summarises one member.
// +kubebuilder:validation:Enum=Healthy;Syncing;Unreachable;Stopped;Missing;Pending
type MemberHealth string

const (
	HealthHealthy     MemberHealth = "Healthy"
	HealthSyncing     MemberHealth = "Syncing"
	HealthUnreachable MemberHealth = "Unreachable"
	HealthStopped     MemberHealth = "Stopped"
	HealthMissing     MemberHealth = "Missing"
	HealthPending     MemberHealth = "Pending"
)

// RedisSentinelFormationStatus is what the operator observed. Its paths are a
// contract read by tools and tests.
type RedisSentinelFormationStatus struct {
	// ObservedGeneration is the spec generation the status was computed
	// from; it is stamped only when that generation was reconciled fully.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions: Ready, Progressing, Degraded, SecretsValid, and Paused and
	// Switchover once those annotations were used.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// Phase is a one-word summary.
	// +optional
	Phase FormationPhase `json:"phase,omitempty"`

	// Master is the current master as Sentinel's majority sees it.
	// +optional
	Master *MasterStatus `json:"master,omitempty"`

	// ReadyMembers counts healthy members (a master or a linked replica).
	// +optional
	ReadyMembers int32 `json:"readyMembers"`

	// IncusHost is the IncusHost the members live on: spec.incus.hostRef,
	// or the default host when the formation was first reconciled, so
	// that marking another host default moves nothing.
	// +optional
	IncusHost string `json:"incusHost,omitempty"`

	// Members lists every member, ordered by name.
	// +listType=map
	// +listMapKey=name
	// +optional
	Members []MemberStatus `json:"members,omitempty"`

	// Sentinels summarises the sentinels.
	// +optional
	Sentinels SentinelsStatus `json:"sentinels,omitempty"`

	// Failovers counts the master switches observed.
	// +optional
	Failovers int64 `json:"failovers"`

	// LastFailover describes the latest master switch.
	// +optional
	LastFailover *FailoverRecord `json:"lastFailover,omitempty"`

	// RecentEvents are the latest Sentinel events, newest last, at most 20.
	// +kubebuilder:validation:MaxItems=20
	// +listType=atomic
	// +optional
	RecentEvents []SentinelEvent `json:"recentEvents,omitempty"`

	// Connection is what backends need to reach the formation.
	// +optional
	Connection *ConnectionInfo `json:"connection,omitempty"`

	// ReplicationSampledAt is when the members' replication offsets and
	// lag in this status were read. Offsets move with every write, so a
	// change of offsets alone is written at most every 30 s.
	// +optional
	ReplicationSampledAt *metav1.Time `json:"replicationSampledAt,omitempty"`

	// PlannedFailover is a switchover the operator is carrying out (or
	// did last, until its cooldown ends): a rollout or scale-down moving
	// the master role away from a member it must replace or remove.
	// +optional
	PlannedFailover *PlannedFailoverStatus `json:"plannedFailover,omitempty"`

	// Switchover is the latest switchover asked for with the
	// redis.incusops.io/switchover annotation, and its outcome.
	// +optional
	Switchover *SwitchoverStatus `json:"switchover,omitempty"`

	// MasterOutage is the master's outage being handled, from when the
	// operator learnt of it until a new master is recorded (its figures
	// then move into lastFailover) or the master answers again.
	// +optional
	MasterOutage *MasterOutageStatus `json:"masterOutage,omitempty"`

	// PasswordRotation is set while rotated passwords' predecessors are
	// still accepted beside them. The predecessors themselves are kept in
	// the Secret named here, which the formation owns.
	// +optional
	PasswordRotation *PasswordRotationStatus `json:"passwordRotation,omitempty"`

	// BackendRules are the backend user's rules the members run with:
	// members created later get these, and a change of
	// spec.auth.backendUser.rules is applied live and recorded here only
	// once every member took it. Empty until the first rules were applied:
	// members start with a backend user allowed nothing (fail closed).
	// +listType=atomic
	// +optional
	BackendRules []string `json:"backendRules,omitempty"`

	// TLS is the state of the formation's certificates (TLS on only).
	// +optional
	TLS *TLSStatus `json:"tls,omitempty"`
}

// PlannedFailoverPhase is a step of a planned failover.
// +kubebuilder:validation:Enum=HoldingWrites;Promoting;Done
type PlannedFailoverPhase string

const (
	// PlannedFailoverHoldingWrites: writes are paused on the master while
	// its linked replicas catch up with it.
	PlannedFailoverHoldingWrites PlannedFailoverPhase = "HoldingWrites"
	// PlannedFailoverPromoting: SENTINEL FAILOVER was asked; the old
	// master is demoted as soon as a replica is promoted.
	PlannedFailoverPromoting PlannedFailoverPhase = "Promoting"
	// PlannedFailoverDone: finished (or given up); kept until the
	// cooldown after RequestedAt ends.
	PlannedFailoverDone PlannedFailoverPhase = "Done"
)

// PlannedFailoverStatus is the progress of a planned failover. It lives in
// status so that an operator restarted in the middle carries on (or waits
// out the cooldown) instead of asking Sentinel twice.
type PlannedFailoverStatus struct {
	// From is the member the master role moves away from.
	From string `json:"from"`
	// Reason says why.
	Reason string `json:"reason"`
	// Phase is the current step.
	Phase PlannedFailoverPhase `json:"phase"`
	// HoldStartedAt is when writes were paused on From (the pause ends by
	// itself after a few seconds, also if the operator dies).
	HoldStartedAt metav1.MicroTime `json:"holdStartedAt"`
	// RequestedAt is when SENTINEL FAILOVER was asked.
	// +optional
	RequestedAt *metav1.MicroTime `json:"requestedAt,omitempty"`
}

// OutageDetector says how the operator learnt that the master was gone.
// +kubebuilder:validation:Enum=Incus;Sentinel
type OutageDetector string

const (
	// DetectedByIncus: Incus reported the master's container not running.
	DetectedByIncus OutageDetector = "Incus"
	// DetectedBySentinel: a sentinel announced +sdown of the master.
	DetectedBySentinel OutageDetector = "Sentinel"
)

// MasterOutageStatus is an outage of the master. It lives in status so
// that an operator restarted in the middle neither asks Sentinel twice nor
// loses when the outage began.
type MasterOutageStatus struct {
	// Member is the master that is gone.
	Member string `json:"member"`
	// LostAt is when the master stopped answering as far as known: the
	// time of Incus's stop event, else the first +sdown minus down-after.
	LostAt metav1.MicroTime `json:"lostAt"`
	// DetectedAt is when the operator learnt of it.
	DetectedAt metav1.MicroTime `json:"detectedAt"`
	// DetectedBy says how.
	DetectedBy OutageDetector `json:"detectedBy"`
	// FailoverRequestedAt is when the operator asked a sentinel for
	// SENTINEL FAILOVER (the fast path); unset while the outage is left to
	// Sentinel's own down-after.
	// +optional
	FailoverRequestedAt *metav1.MicroTime `json:"failoverRequestedAt,omitempty"`
	// Sentinel is the member whose sentinel was asked.
	// +optional
	Sentinel string `json:"sentinel,omitempty"`
}

// FailoverPath says what promoted a new master.
// +kubebuilder:validation:Enum=Fast;Sentinel;Planned
type FailoverPath string

const (
	// FailoverPathFast: the operator asked SENTINEL FAILOVER because Incus
	// reported the master's container stopped.
	FailoverPathFast FailoverPath = "Fast"
	// FailoverPathSentinel: the sentinels agreed the master was down
	// (down-after, quorum, election) on their own.
	FailoverPathSentinel FailoverPath = "Sentinel"
	// FailoverPathPlanned: a planned failover of the operator's (a
	// switchover, a rollout or a scale-down moving the master role).
	FailoverPathPlanned FailoverPath = "Planned"
)

// PasswordRotationStatus is an ongoing password rotation.
type PasswordRotationStatus struct {
	// RetireAt is when the previous passwords stop being accepted.
	RetireAt metav1.Time `json:"retireAt"`
	// StateSecretName is the Secret, owned by the formation, that holds
	// the passwords the members were last given and their predecessors.
	StateSecretName string `json:"stateSecretName"`
	// Credentials are the rotated ones: backend, backend-sentinel, admin,
	// replication, monitoring, peer.
	// +listType=set
	// +optional
	Credentials []string `json:"credentials,omitempty"`
}

// MasterStatus is the current master.
type MasterStatus struct {
	// Member is the member name, e.g. "cache-1".
	Member string `json:"member"`
	// Address is the master's IP address.
	Address string `json:"address"`
	// Port is the master's redis port.
	Port int32 `json:"port"`
	// Since is when this member became master, as far as the operator saw.
	// +optional
	Since *metav1.Time `json:"since,omitempty"`
	// ConfigEpoch is Sentinel's config epoch of this master: a failover
	// is counted once, when a master with a newer epoch is seen.
	// +optional
	ConfigEpoch int64 `json:"configEpoch,omitempty"`
}

// MemberStatus is one member's observed state.
type MemberStatus struct {
	// Name is the member name, "<formation>-<n>".
	Name string `json:"name"`
	// Engine is what the member's container was built to run (an engine
	// migration replaces the members one by one).
	// +optional
	Engine Engine `json:"engine,omitempty"`
	// Instance is the Incus instance name.
	Instance string `json:"instance"`
	// Address is the member's IPv4 address on the bridge. On a network
	// whose addresses Incus manages it is chosen and recorded here before
	// the member's container is created, then pinned on the container and
	// configured in it before its first boot; a rebuilt member keeps it.
	// +optional
	Address string `json:"address,omitempty"`
	// RedisPort and SentinelPort are the ports the member's servers were
	// configured with: the spec's when its container was built, older ones
	// while a change of spec.redis.port or sentinelPort rolls.
	// +optional
	RedisPort int32 `json:"redisPort,omitempty"`
	// +optional
	SentinelPort int32 `json:"sentinelPort,omitempty"`
	// Location is the Incus cluster member the container runs on, as Incus
	// reports it (empty on a standalone server).
	// +optional
	Location string `json:"location,omitempty"`
	// HostLostSince is when the member's cluster member was first seen
	// offline; cleared once it is back or the member was re-created.
	// +optional
	HostLostSince *metav1.Time `json:"hostLostSince,omitempty"`
	// AbandonedInstance is the container a member left on a lost host when
	// it was re-created elsewhere; it is deleted once that host is back.
	// +optional
	AbandonedInstance string `json:"abandonedInstance,omitempty"`
	// InstanceState is Incus's status of the container (Running, Stopped...).
	// +optional
	InstanceState string `json:"instanceState,omitempty"`
	// Role is what redis-server reports.
	// +optional
	Role MemberRole `json:"role,omitempty"`
	// Health summarises the member.
	// +optional
	Health MemberHealth `json:"health,omitempty"`
	// MasterLinkUp is true when a replica's link to its master is up.
	// +optional
	MasterLinkUp bool `json:"masterLinkUp,omitempty"`
	// ReplicationOffset is the member's replication offset.
	// +optional
	ReplicationOffset int64 `json:"replicationOffset,omitempty"`
	// LagBytes is how far a replica's offset is behind the master's.
	// +optional
	LagBytes int64 `json:"lagBytes,omitempty"`
	// SentinelUp is true when the member's sentinel answered.
	// +optional
	SentinelUp bool `json:"sentinelUp,omitempty"`
	// StartedAt is when the operator last started the member's stopped
	// container; one that stops again within a minute is crashing and is
	// not started again before that minute has passed.
	// +optional
	StartedAt *metav1.Time `json:"startedAt,omitempty"`
	// SentinelResetAt is when the operator last ran SENTINEL RESET on the
	// member's sentinel (resets are at least 3 minutes apart).
	// +optional
	SentinelResetAt *metav1.Time `json:"sentinelResetAt,omitempty"`
	// SentinelStaleSince is since when the member's sentinel has monitored
	// another address than the master; after a grace it is re-pointed.
	// +optional
	SentinelStaleSince *metav1.Time `json:"sentinelStaleSince,omitempty"`
	// SettingsHash fingerprints the runtime settings the member's
	// redis-server was last given with CONFIG SET.
	// +optional
	SettingsHash string `json:"settingsHash,omitempty"`
	// TLSHash fingerprints the TLS files (CA and certificate) the member's
	// redis-server was last given; SentinelTLSHash those its sentinel was
	// last started with (Sentinel 7.0 takes new ones only at a start).
	// +optional
	TLSHash string `json:"tlsHash,omitempty"`
	// +optional
	SentinelTLSHash string `json:"sentinelTLSHash,omitempty"`
}

// SentinelsStatus summarises the sentinels.
//
// Its fields are optional in the schema: a status merge patch carries only
// the fields that changed, and a zero value never written before (the
// sentinels before the first one answers) is absent from the stored object.
type SentinelsStatus struct {
	// Reachable counts sentinels that answered.
	// +optional
	Reachable int32 `json:"reachable"`
	// QuorumOK is true when every reachable sentinel reports CKQUORUM OK.
	// +optional
	QuorumOK bool `json:"quorumOK"`
}

// FailoverRecord describes one master switch.
type FailoverRecord struct {
	// Time is when +switch-master was announced, or when the operator
	// first saw the new master if it missed the announcement.
	Time metav1.MicroTime `json:"time"`
	// From is the previous master (member name, or address if unknown).
	From string `json:"from"`
	// To is the new master (member name, or address if unknown).
	To string `json:"to"`
	// Path says what promoted the new master.
	// +optional
	Path FailoverPath `json:"path,omitempty"`
	// MasterLostAt is when the old master stopped answering: the time of
	// Incus's stop event when known, else its first +sdown minus
	// down-after. Absent when neither was seen (e.g. the operator was not
	// running) and for a planned failover.
	// +optional
	MasterLostAt *metav1.MicroTime `json:"masterLostAt,omitempty"`
	// DetectedAt is when the operator learnt the master was gone (the
	// Incus event or the first +sdown).
	// +optional
	DetectedAt *metav1.MicroTime `json:"detectedAt,omitempty"`
	// Duration is the outage: from masterLostAt to the announcement of
	// the new master (time). For a planned failover, from the start of
	// the write hold to the announcement.
	// +optional
	Duration *metav1.Duration `json:"duration,omitempty"`
	// ConfigEpoch is Sentinel's config epoch of the new master; 0 when
	// unknown.
	// +optional
	ConfigEpoch int64 `json:"configEpoch,omitempty"`
}

// SentinelEvent is one event published by a sentinel.
type SentinelEvent struct {
	// Time is when the operator received the event.
	Time metav1.MicroTime `json:"time"`
	// Sentinel is the member whose sentinel published it.
	Sentinel string `json:"sentinel"`
	// Type is Sentinel's channel name, e.g. "+switch-master".
	Type string `json:"type"`
	// Message is the event's payload.
	// +optional
	Message string `json:"message,omitempty"`
}

// ConnectionInfo is how backends reach the formation.
type ConnectionInfo struct {
	// SentinelAddresses are "ip:port" of every sentinel.
	SentinelAddresses []string `json:"sentinelAddresses"`
	// MasterName is the Sentinel master name.
	MasterName string `json:"masterName"`
	// SecretName is the Secret with REDIS_SENTINEL_ADDRS,
	// REDIS_SENTINEL_MASTER_NAME, REDIS_SENTINEL_PASSWORD and REDIS_URL.
	SecretName string `json:"secretName"`
}

// RedisSentinelFormation is a highly available Redis (one primary, replicas,
// a Sentinel per member) running in Incus containers.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=rsf,categories=redis
// +kubebuilder:validation:XValidation:rule="self.metadata.name.matches('^[a-z]([-a-z0-9]{0,53}[a-z0-9])?$')",message="metadata.name must be a DNS label of at most 55 characters starting with a letter: it begins the member names (<name>-<n>) and the Incus instance names (<name>-<namespace>-<hash>-<n>)"
// +kubebuilder:printcolumn:name="Master",type=string,JSONPath=`.status.master.member`
// +kubebuilder:printcolumn:name="Address",type=string,JSONPath=`.status.master.address`,priority=1
// +kubebuilder:printcolumn:name="Ready",type=integer,JSONPath=`.status.readyMembers`
// +kubebuilder:printcolumn:name="Members",type=integer,JSONPath=`.spec.members`
// +kubebuilder:printcolumn:name="Engine",type=string,JSONPath=`.spec.engine`,priority=1
// +kubebuilder:printcolumn:name="Spread",type=string,JSONPath=`.status.conditions[?(@.type=="Spread")].status`,priority=1
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Failovers",type=integer,JSONPath=`.status.failovers`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type RedisSentinelFormation struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   RedisSentinelFormationSpec   `json:"spec"`
	Status RedisSentinelFormationStatus `json:"status,omitempty"`
}

// RedisSentinelFormationList is a list of formations.
// +kubebuilder:object:root=true
type RedisSentinelFormationList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []RedisSentinelFormation `json:"items"`
}

func init() {
	SchemeBuilder.Register(&RedisSentinelFormation{}, &RedisSentinelFormationList{})
}
