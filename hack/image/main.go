// Command image builds the operator's OCI image from a static binary,
// without a container engine or a registry: one layer holding the binary
// and the passwd/group entries of its non-root user, on no base image.
//
// The build is reproducible: every file time and the image's creation time
// are -created (the commit's time), owners are root, entries are sorted; the
// same binary gives the same digest. The image is written as an OCI layout
// (-layout, the pinned reference for `make deploy`) and as an archive
// `docker load` takes (-archive); both are left alone
// when they already hold that digest.
package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// nonRoot is the user the operator runs as (the Deployment's runAsUser).
const nonRoot = 65532

type options struct {
	binary, layoutDir, archive, digestFile string
	command, title, description            string
	repo, version, revision, source        string
	created                                time.Time
}

func main() {
	var o options
	var created int64
	flag.StringVar(&o.binary, "binary", "bin/image/manager", "the static operator binary")
	flag.StringVar(&o.command, "command", "manager", "the binary's name in the image (/NAME, the entrypoint)")
	flag.StringVar(&o.title, "title", "redis-sentinel-operator", "org.opencontainers.image.title")
	flag.StringVar(&o.description, "description", "Kubernetes operator for Redis with Sentinel in Incus containers", "org.opencontainers.image.description")
	flag.StringVar(&o.layoutDir, "layout", "bin/image/oci", "OCI layout directory to write")
	flag.StringVar(&o.archive, "archive", "bin/image/redis-sentinel-operator.tar", "docker-archive to write (docker load)")
	flag.StringVar(&o.digestFile, "digest-file", "bin/image/digest", "file that receives the image's reference by digest")
	flag.StringVar(&o.repo, "repo", "localhost/redis-sentinel-operator", "image repository (the tag is -version)")
	flag.StringVar(&o.version, "version", "dev", "image version (org.opencontainers.image.version, and the tag)")
	flag.StringVar(&o.revision, "revision", "", "source revision (org.opencontainers.image.revision)")
	flag.StringVar(&o.source, "source", "https://github.com/incusops/redis-sentinel-operator", "org.opencontainers.image.source")
	flag.Int64Var(&created, "created", 0, "creation time, Unix seconds (the commit's time, for a reproducible image)")
	flag.Parse()
	o.created = time.Unix(created, 0).UTC()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	binary, err := os.ReadFile(o.binary)
	if err != nil {
		return err
	}
	img, err := build(binary, o)
	if err != nil {
		return err
	}
	digest, err := img.Digest()
	if err != nil {
		return err
	}
	ref, err := name.NewTag(o.repo + ":" + o.version)
	if err != nil {
		return fmt.Errorf("image reference: %w", err)
	}
	pinned := ref.Context().Digest(digest.String()).String()
	if prev, err := os.ReadFile(o.digestFile); err == nil && string(bytes.TrimSpace(prev)) == pinned && exists(o.archive) && exists(o.layoutDir) {
		fmt.Printf("image %s unchanged (%s)\n", ref, pinned)
		return report(img)
	}

	if err := os.RemoveAll(o.layoutDir); err != nil {
		return err
	}
	p, err := layout.Write(o.layoutDir, empty.Index)
	if err != nil {
		return err
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": ref.String()})); err != nil {
		return err
	}
	if err := tarball.WriteToFile(o.archive, ref, img); err != nil {
		return err
	}
	if err := os.WriteFile(o.digestFile, []byte(pinned+"\n"), 0o644); err != nil {
		return err
	}
	fmt.Printf("image %s built: %s\n", ref, pinned)
	return report(img)
}

// build assembles the image: the binary as /<command>, run as nonRoot.
func build(binary []byte, o options) (v1.Image, error) {
	fs, err := rootfs(o.command, binary, o.created)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(fs)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	labels := map[string]string{
		"org.opencontainers.image.title":       o.title,
		"org.opencontainers.image.description": o.description,
		"org.opencontainers.image.version":     o.version,
		"org.opencontainers.image.revision":    o.revision,
		"org.opencontainers.image.source":      o.source,
		"org.opencontainers.image.created":     o.created.Format(time.RFC3339),
		"org.opencontainers.image.licenses":    "Apache-2.0",
	}
	base := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	base = mutate.ConfigMediaType(base, types.OCIConfigJSON)
	img, err := mutate.Append(base, mutate.Addendum{Layer: layer, History: v1.History{
		Created: v1.Time{Time: o.created}, CreatedBy: "hack/image: /" + o.command + " " + o.version, Comment: "static binary, non-root user " + strconv.Itoa(nonRoot),
	}})
	if err != nil {
		return nil, err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.DeepCopy()
	cfg.Architecture, cfg.OS = "amd64", "linux"
	cfg.Created = v1.Time{Time: o.created}
	cfg.Config = v1.Config{
		User:       strconv.Itoa(nonRoot) + ":" + strconv.Itoa(nonRoot),
		Entrypoint: []string{"/" + o.command},
		WorkingDir: "/",
		Env:        []string{"PATH=/"},
		Labels:     labels,
	}
	img, err = mutate.ConfigFile(img, cfg)
	if err != nil {
		return nil, err
	}
	return mutate.Annotations(img, labels).(v1.Image), nil
}

// rootfs is the layer's tar: sorted entries, fixed times, root-owned.
func rootfs(command string, binary []byte, mtime time.Time) ([]byte, error) {
	entries := []struct {
		name string
		mode int64
		data []byte // nil: a directory
	}{
		{"etc/", 0o755, nil},
		{"etc/group", 0o644, fmt.Appendf(nil, "root:x:0:\nnonroot:x:%d:\n", nonRoot)},
		{"etc/passwd", 0o644, fmt.Appendf(nil, "root:x:0:0:root:/:/sbin/nologin\nnonroot:x:%d:%d:nonroot:/:/sbin/nologin\n", nonRoot, nonRoot)},
		{command, 0o755, binary},
		// The root filesystem is mounted read-only; an emptyDir may be
		// mounted here should Go or controller-runtime ever need to write.
		{"tmp/", 0o1777, nil},
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Typeflag: tar.TypeReg, Name: e.name, Mode: e.mode, Size: int64(len(e.data)), ModTime: mtime, Format: tar.FormatPAX}
		if e.data == nil {
			h.Typeflag = tar.TypeDir
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// report prints the image's size: what a node pulls (compressed) and
// what it stores unpacked.
func report(img v1.Image) error {
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	var compressed, unpacked int64
	for _, l := range layers {
		c, err := l.Size()
		if err != nil {
			return err
		}
		rc, err := l.Uncompressed()
		if err != nil {
			return err
		}
		n, err := io.Copy(io.Discard, rc)
		_ = rc.Close()
		if err != nil {
			return err
		}
		compressed, unpacked = compressed+c, unpacked+n
	}
	fmt.Printf("image size: %.1f MiB compressed, %.1f MiB unpacked, %d layer(s)\n", mib(compressed), mib(unpacked), len(layers))
	return nil
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

func exists(path string) bool {
	_, err := os.Stat(path)
	return !errors.Is(err, os.ErrNotExist)
}
