package testenv

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// Manifests reads the objects of the files a kustomization lists as its
// resources (dir relative to the repository's config/), in order: what the
// tests apply and check is exactly what is shipped.
func Manifests(dir string) ([]*unstructured.Unstructured, error) {
	dir = filepath.Join(RepoRoot(), "config", dir)
	var kust struct{ Resources []string }
	raw, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		return nil, err
	}
	if err := yaml.Unmarshal(raw, &kust); err != nil {
		return nil, err
	}
	var objs []*unstructured.Unstructured
	for _, res := range kust.Resources {
		raw, err := os.ReadFile(filepath.Join(dir, res))
		if err != nil {
			return nil, err
		}
		r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(raw)))
		for {
			doc, err := r.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("%s: %w", res, err)
			}
			obj := &unstructured.Unstructured{}
			if err := yaml.Unmarshal(doc, &obj.Object); err != nil {
				return nil, fmt.Errorf("%s: %w", res, err)
			}
			if len(obj.Object) > 0 {
				objs = append(objs, obj)
			}
		}
	}
	return objs, nil
}
