package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// IncusHostSpec is an Incus server (or cluster) that an administrator
// offers to formations, and what formations may choose on it. Formations
// name a host (spec.incus.hostRef) the way claims name a StorageClass:
// application teams choose within the allowlist, never beyond it.
// +kubebuilder:validation:XValidation:rule="!has(self.socket) || !has(self.remote)",message="set spec.socket or spec.remote, not both"
type IncusHostSpec struct {
	// Default marks the host that formations without spec.incus.hostRef
	// use. When several hosts are marked, such formations are refused until
	// one is unmarked.
	// +optional
	Default bool `json:"default,omitempty"`

	// Socket is the path of the local Incus unix socket. Without socket
	// and remote, /var/lib/incus/unix.socket is used.
	// +kubebuilder:validation:MaxLength=4096
	// +kubebuilder:validation:Pattern=`^/`
	// +optional
	Socket string `json:"socket,omitempty"`

	// Remote is an Incus server reached over HTTPS.
	// +optional
	Remote *IncusHostRemote `json:"remote,omitempty"`

	// NamespaceSelector selects the namespaces whose formations may use the
	// host. Unset admits no namespace; {} admits every namespace.
	// +optional
	NamespaceSelector *metav1.LabelSelector `json:"namespaceSelector,omitempty"`

	// Allowed lists what formations on this host may use.
	// +kubebuilder:default={}
	// +optional
	Allowed IncusHostAllowlist `json:"allowed,omitempty"`

	// DefaultLimits are the container limits of formations that set none
	// (each of CPU and memory on its own).
	// +optional
	DefaultLimits ContainerLimits `json:"defaultLimits,omitempty"`

	// MaxLimits caps every member container on this host: a formation
	// asking for more (or, with a cap set, for no limit at all) is refused.
	// +optional
	MaxLimits ContainerLimits `json:"maxLimits,omitempty"`
}

// IncusHostRemote is a remote Incus server. The operator authenticates with
// a client certificate the server trusts and accepts exactly the pinned
// server certificate.
type IncusHostRemote struct {
	// URL is the server's HTTPS address, e.g. https://10.0.0.5:8443.
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:Pattern=`^https://[^/?#\s]+/?$`
	URL string `json:"url"`

	// FallbackURLs are other addresses of the same server, tried in order
	// when URL does not answer: the other members of an Incus cluster, which
	// all present the cluster's certificate.
	// +kubebuilder:validation:MaxItems=8
	// +kubebuilder:validation:items:MaxLength=2048
	// +kubebuilder:validation:items:Pattern=`^https://[^/?#\s]+/?$`
	// +listType=atomic
	// +optional
	FallbackURLs []string `json:"fallbackURLs,omitempty"`

	// ClientCertificateSecretName is a Secret in the operator's namespace
	// with the keys tls.crt and tls.key: the operator's client certificate
	// and key, trusted by the server. Only the operator's namespace, so
	// that no formation author can point the operator at a certificate.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	ClientCertificateSecretName string `json:"clientCertificateSecretName"`

	// ServerCertificate is the server's certificate (PEM). The certificate
	// the server presents must be exactly this one: no CA, no name check.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=16384
	ServerCertificate string `json:"serverCertificate"`
}

// IncusHostAllowlist lists the Incus objects formations may use. A
// formation naming anything else is refused before anything is created.
type IncusHostAllowlist struct {
	// Projects formations may create their containers in.
	// +kubebuilder:default={"default"}
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=63
	// +listType=set
	// +optional
	Projects []string `json:"projects,omitempty"`

	// Profiles formations may apply.
	// +kubebuilder:default={"rsf-redis"}
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=63
	// +listType=set
	// +optional
	Profiles []string `json:"profiles,omitempty"`

	// Networks formations may attach members to.
	// +kubebuilder:default={"rsfbr0"}
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=63
	// +listType=set
	// +optional
	Networks []string `json:"networks,omitempty"`

	// StoragePools formations may put root disks on.
	// +kubebuilder:default={"rsf"}
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=63
	// +listType=set
	// +optional
	StoragePools []string `json:"storagePools,omitempty"`

	// Images (aliases) formations may create members from.
	// +kubebuilder:default={"rsf-redis7-bookworm-v1","rsf-valkey8-bookworm-v1"}
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=255
	// +listType=set
	// +optional
	Images []string `json:"images,omitempty"`

	// Targets are the cluster members formations may place members on
	// explicitly (spec.incus.targets). Empty: formations may not choose,
	// Incus places members.
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=63
	// +listType=set
	// +optional
	Targets []string `json:"targets,omitempty"`

	// ClusterGroups are the Incus cluster groups formations may confine
	// their members to (spec.incus.placement.group). Empty: none.
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=63
	// +listType=set
	// +optional
	ClusterGroups []string `json:"clusterGroups,omitempty"`
}

// Condition types and reasons of an IncusHost.
const (
	// HostConditionReachable is true when the operator connected to the
	// host and read its server information.
	HostConditionReachable = "Reachable"
	// HostConditionInUse is true while a deleted host is kept because
	// formations still live on it.
	HostConditionInUse = "InUse"
)

// IncusHostStatus is what the operator found at the host.
type IncusHostStatus struct {
	// ObservedGeneration is the spec generation last checked.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions: Reachable, and InUse while a deletion waits.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// ServerVersion is the Incus server version.
	// +optional
	ServerVersion string `json:"serverVersion,omitempty"`

	// Clustered is true when the server is a member of an Incus cluster.
	// +optional
	Clustered bool `json:"clustered,omitempty"`

	// ClusterMembers are the cluster's members with their status, e.g.
	// "node1 (Online)".
	// +listType=atomic
	// +optional
	ClusterMembers []string `json:"clusterMembers,omitempty"`
}

// IncusHost is an Incus server that administrators offer to formations,
// with what formations may use on it. Cluster-scoped: only administrators
// create hosts; application teams create formations that name them.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=ih,categories=redis
// +kubebuilder:printcolumn:name="Default",type=boolean,JSONPath=`.spec.default`
// +kubebuilder:printcolumn:name="Remote",type=string,JSONPath=`.spec.remote.url`
// +kubebuilder:printcolumn:name="Reachable",type=string,JSONPath=`.status.conditions[?(@.type=="Reachable")].status`
// +kubebuilder:printcolumn:name="Version",type=string,JSONPath=`.status.serverVersion`
// +kubebuilder:printcolumn:name="Clustered",type=boolean,JSONPath=`.status.clustered`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type IncusHost struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   IncusHostSpec   `json:"spec,omitempty"`
	Status IncusHostStatus `json:"status,omitempty"`
}

// IncusHostList is a list of hosts.
// +kubebuilder:object:root=true
type IncusHostList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []IncusHost `json:"items"`
}

func init() {
	SchemeBuilder.Register(&IncusHost{}, &IncusHostList{})
}
