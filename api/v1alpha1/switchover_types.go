package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Annotations on a RedisSentinelFormation that ask the operator for
// something once (kubectl annotate), rather than declaring a state.
const (
	// AnnotationSwitchover asks for a planned switchover: its value names
	// the member to promote, or SwitchoverAny to let Sentinel choose. A
	// value is handled once (status.switchover.request); removing the
	// annotation and setting it again asks again.
	AnnotationSwitchover = "redis.incusops.io/switchover"
	// AnnotationPause, with any value, stops every change the operator
	// would make to the formation's instances, servers and Secrets until
	// it is removed; status is still observed and written.
	AnnotationPause = "redis.incusops.io/pause"
)

// SwitchoverAny is the switchover annotation's value that promotes
// whichever in-sync replica Sentinel picks.
const SwitchoverAny = "any"

// ConditionSwitchover reports the outcome of the latest switchover request:
// true while it is carried out and once it succeeded, false when it was
// refused or failed (the reason says why). Absent before the first request.
const ConditionSwitchover = "Switchover"

// ConditionPaused is true while the pause annotation holds the operator's
// changes back; it turns false when the annotation is removed.
const ConditionPaused = "Paused"

// SwitchoverPhase is where a switchover request stands.
// +kubebuilder:validation:Enum=InProgress;Succeeded;Refused;Failed
type SwitchoverPhase string

const (
	// SwitchoverInProgress: accepted and being carried out.
	SwitchoverInProgress SwitchoverPhase = "InProgress"
	// SwitchoverSucceeded: the requested member (or, for "any", another
	// member) became the master.
	SwitchoverSucceeded SwitchoverPhase = "Succeeded"
	// SwitchoverRefused: the request could not be honoured; nothing was
	// changed.
	SwitchoverRefused SwitchoverPhase = "Refused"
	// SwitchoverFailed: accepted, then given up; the master did not move
	// (or not to the requested member) and what was changed was undone.
	SwitchoverFailed SwitchoverPhase = "Failed"
)

// SwitchoverStatus is the latest switchover request and its outcome. It
// lives in status so that a request is handled once, and so that an
// operator restarted in the middle carries on from where it was.
type SwitchoverStatus struct {
	// Request is the annotation value handled; cleared when the annotation
	// is removed (the outcome stays).
	// +optional
	Request string `json:"request,omitempty"`
	// Phase is the outcome so far.
	Phase SwitchoverPhase `json:"phase"`
	// Reason is a CamelCase reason for the phase (e.g. TargetNotInSync).
	// +optional
	Reason string `json:"reason,omitempty"`
	// Message says it for humans.
	// +optional
	Message string `json:"message,omitempty"`
	// From is the master when the request was accepted.
	// +optional
	From string `json:"from,omitempty"`
	// To is the requested member, or the promoted one once known.
	// +optional
	To string `json:"to,omitempty"`
	// StartedAt is when the request was handled first.
	// +optional
	StartedAt *metav1.Time `json:"startedAt,omitempty"`
	// FinishedAt is when it was refused, failed or succeeded.
	// +optional
	FinishedAt *metav1.Time `json:"finishedAt,omitempty"`
	// LoweredPriorities are the replicas whose replica-priority the
	// operator set to 0 so that Sentinel promotes only the requested
	// member, with the priority they are given back once the switchover
	// ended (also after a failure or an operator restart).
	// +listType=map
	// +listMapKey=member
	// +optional
	LoweredPriorities []ReplicaPriority `json:"loweredPriorities,omitempty"`
}

// ReplicaPriority is a replica's replica-priority to restore.
type ReplicaPriority struct {
	// Member is the replica.
	Member string `json:"member"`
	// Priority is its replica-priority before the switchover.
	Priority int32 `json:"priority"`
}
