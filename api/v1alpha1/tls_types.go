package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// AnnotationRenewCertificates asks the operator to renew the certificates
// it issued for a formation now, before they are due: a new value is
// handled once (status.tls.renewRequest).
const AnnotationRenewCertificates = "redis.incusops.io/renew-certificates"

// ConditionTLSReady is true when the formation's TLS material is valid and
// every member serves it; false (with the reason) when the material is
// refused, in which case nothing is created or restarted and the members
// keep serving their current certificates. Absent when TLS is off.
const ConditionTLSReady = "TLSReady"

// ClientAuth says whether redis-server and redis-sentinel require clients
// to present a certificate signed by the formation's CA.
// +kubebuilder:validation:Enum=None;Required
type ClientAuth string

const (
	ClientAuthNone     ClientAuth = "None"
	ClientAuthRequired ClientAuth = "Required"
)

// TLSSpec encrypts every link of the formation: backends to redis-server
// and to the sentinels, replica to master, sentinel to server and sentinel
// to sentinel. With TLS on, the servers listen with TLS only, on the spec's
// ports; the plaintext ports are closed.
//
// Whether TLS is on, and whether client certificates are required, is
// chosen when the formation is created: backends would have to switch
// their scheme and certificates at the same moment as every member, which
// no rolling change of the operator's can give them. To change it, create
// a formation with the new setting and move the backends over.
// +kubebuilder:validation:XValidation:rule="!has(self.certificateDuration) || !has(self.renewBefore) || duration(self.renewBefore) < duration(self.certificateDuration)",message="spec.tls.renewBefore must be shorter than spec.tls.certificateDuration, or the certificates would be renewed on every pass",fieldPath=".renewBefore"
type TLSSpec struct {
	// Enabled turns TLS on.
	Enabled bool `json:"enabled"`

	// SecretName is a Secret in the formation's namespace with the
	// members' certificate in cert-manager's layout: tls.crt (covering
	// every member's address, status.members[].address, as an IP SAN),
	// tls.key and ca.crt. Changes to it are applied live. Unset: the
	// operator runs a CA for the formation and issues each member its own
	// certificate, kept in the Secret <name>-tls the formation owns.
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	// +optional
	SecretName string `json:"secretName,omitempty"`

	// ClientAuth Required makes redis-server and redis-sentinel refuse
	// clients without a certificate signed by the CA (tls-auth-clients
	// yes). With the operator's CA the connection Secret carries a client
	// certificate for the backends; with SecretName, backends bring their
	// own, signed by its ca.crt.
	// +kubebuilder:default=None
	// +optional
	ClientAuth ClientAuth `json:"clientAuth,omitempty"`

	// CertificateDuration is how long the certificates the operator issues
	// are valid.
	// +kubebuilder:default="2160h"
	// +optional
	CertificateDuration *metav1.Duration `json:"certificateDuration,omitempty"`

	// RenewBefore is how long before they expire the operator renews its
	// certificates; the members take the new ones live.
	// +kubebuilder:default="720h"
	// +optional
	RenewBefore *metav1.Duration `json:"renewBefore,omitempty"`
}

// TLSStatus is the state of the formation's certificates.
type TLSStatus struct {
	// NotAfter is when the earliest of the certificates the members serve
	// expires.
	// +optional
	NotAfter *metav1.Time `json:"notAfter,omitempty"`
	// RenewAt is when the operator renews its certificates (unset for a
	// user Secret, which its issuer renews).
	// +optional
	RenewAt *metav1.Time `json:"renewAt,omitempty"`
	// TrustedCA is the CA certificate (PEM) every member trusts now. When
	// the CA changes, members trust it and the new one side by side until
	// every member serves a certificate of the new one.
	// +optional
	TrustedCA string `json:"trustedCA,omitempty"`
	// RenewRequest is the value of the renew-certificates annotation last
	// carried out.
	// +optional
	RenewRequest string `json:"renewRequest,omitempty"`
}
