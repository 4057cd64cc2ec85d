package controllers

import (
	"context"
	"sync"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	toolscache "k8s.io/client-go/tools/cache"
)

// secretWatches keeps one watch of Secret metadata per namespace where the
// operator reconciles formations, so that a changed password Secret or a
// changed owned Secret triggers its formations at once. Kubernetes RBAC
// cannot grant Secrets by label, so the operator is granted them namespace
// by namespace (a RoleBinding to the rsf-formation-secrets ClusterRole); a
// cluster-wide informer would need them everywhere. A namespace is watched
// from the first pass that could read its Secrets until its last formation
// is forgotten. Only names and owner references are kept: no Secret data or
// annotation (kubectl's last-applied-configuration holds the data) is ever
// in memory; passes read Secrets from the API server.
type secretWatches struct {
	client metadata.Interface
	// changed is called with every added, updated or deleted Secret.
	changed func(secret *metav1.PartialObjectMetadata)
	log     logr.Logger
	// base is cancelled when the manager stops.
	base context.Context

	mu   sync.Mutex
	byNS map[string]*namespaceWatch
}

type namespaceWatch struct {
	formations sets.Set[types.NamespacedName]
	stop       context.CancelFunc
}

func newSecretWatches(base context.Context, c metadata.Interface, log logr.Logger, changed func(*metav1.PartialObjectMetadata)) *secretWatches {
	return &secretWatches{client: c, changed: changed, log: log, base: base, byNS: map[string]*namespaceWatch{}}
}

// ensure watches the formation's namespace (the operator can read its
// Secrets: the pass just did).
func (s *secretWatches) ensure(key types.NamespacedName) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if w, ok := s.byNS[key.Namespace]; ok {
		w.formations.Insert(key)
		return
	}
	ctx, stop := context.WithCancel(s.base)
	w := &namespaceWatch{formations: sets.New(key), stop: stop}
	s.byNS[key.Namespace] = w
	inf := metadatainformer.NewFilteredMetadataInformer(s.client, corev1.SchemeGroupVersion.WithResource("secrets"), key.Namespace, 0, toolscache.Indexers{}, nil).Informer()
	// Errors are only possible once the informer runs.
	_ = inf.SetTransform(secretIdentity)
	_ = inf.SetWatchErrorHandlerWithContext(func(ctx context.Context, r *toolscache.Reflector, err error) {
		if apierrors.IsForbidden(err) {
			// The grant was revoked (the next pass reports it) or lacks
			// list/watch; a pass that reads the Secrets watches again.
			s.log.Info("watching the namespace's Secrets is forbidden; changes are seen at the next pass", "namespace", key.Namespace, "error", err.Error())
			s.drop(key.Namespace, w)
			return
		}
		toolscache.DefaultWatchErrorHandler(ctx, r, err)
	})
	_, _ = inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    s.notify,
		UpdateFunc: func(_, obj any) { s.notify(obj) },
		DeleteFunc: s.notify,
	})
	go inf.RunWithContext(ctx)
	go func() {
		if toolscache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
			s.log.V(1).Info("watching the namespace's Secrets", "namespace", key.Namespace)
		}
	}()
}

// release stops watching the formation's namespace when it was the last
// formation there.
func (s *secretWatches) release(key types.NamespacedName) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	w, ok := s.byNS[key.Namespace]
	if !ok {
		return
	}
	w.formations.Delete(key)
	if w.formations.Len() == 0 {
		w.stop()
		delete(s.byNS, key.Namespace)
		s.log.V(1).Info("no formation left: not watching the namespace's Secrets", "namespace", key.Namespace)
	}
}

// drop stops w if it still is its namespace's watch.
func (s *secretWatches) drop(ns string, w *namespaceWatch) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.byNS[ns] == w {
		delete(s.byNS, ns)
	}
	w.stop()
}

func (s *secretWatches) notify(obj any) {
	if tomb, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	if secret, ok := obj.(*metav1.PartialObjectMetadata); ok {
		s.changed(secret)
	}
}

// secretIdentity keeps of a Secret what maps it to formations: its name,
// namespace and owner references.
func secretIdentity(obj any) (any, error) {
	m, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok {
		return obj, nil
	}
	return &metav1.PartialObjectMetadata{
		TypeMeta: m.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{
			Name: m.Name, Namespace: m.Namespace, UID: m.UID, ResourceVersion: m.ResourceVersion,
			OwnerReferences: m.OwnerReferences,
		},
	}, nil
}
