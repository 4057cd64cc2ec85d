package main

import (
	"archive/tar"
	"errors"
	"io"
	"testing"
	"time"
)

func testOptions() options {
	return options{command: "manager", title: "redis-sentinel-operator", description: "operator", repo: "localhost/redis-sentinel-operator", version: "v1.2.3", revision: "abc", source: "https://example.invalid/x", created: time.Unix(1_700_000_000, 0).UTC()}
}

// The same binary and options give the same digest; any input that
// reaches the image changes it.
func TestBuildIsReproducible(t *testing.T) {
	digest := func(binary string, o options) string {
		t.Helper()
		img, err := build([]byte(binary), o)
		if err != nil {
			t.Fatal(err)
		}
		d, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		return d.String()
	}
	base := digest("binary", testOptions())
	if again := digest("binary", testOptions()); again != base {
		t.Fatalf("two builds of the same input: %s and %s", base, again)
	}
	later := testOptions()
	later.created = later.created.Add(time.Second)
	version := testOptions()
	version.version = "v1.2.4"
	for name, d := range map[string]string{
		"binary":  digest("binary2", testOptions()),
		"created": digest("binary", later),
		"version": digest("binary", version),
	} {
		if d == base {
			t.Errorf("a different %s gave the same digest", name)
		}
	}
}

// The image runs /manager as the non-root user its passwd names, with the
// OCI labels.
func TestImageContents(t *testing.T) {
	img, err := build([]byte("binary"), testOptions())
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Config.User != "65532:65532" || len(cfg.Config.Entrypoint) != 1 || cfg.Config.Entrypoint[0] != "/manager" {
		t.Errorf("user %q, entrypoint %v", cfg.Config.User, cfg.Config.Entrypoint)
	}
	if cfg.Config.Labels["org.opencontainers.image.version"] != "v1.2.3" || cfg.Config.Labels["org.opencontainers.image.revision"] != "abc" {
		t.Errorf("labels %v", cfg.Config.Labels)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if m.Annotations["org.opencontainers.image.created"] != "2023-11-14T22:13:20Z" {
		t.Errorf("manifest annotations %v", m.Annotations)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("%d layers, %v", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	files := map[string]*tar.Header{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		files[h.Name] = h
		if !h.ModTime.Equal(testOptions().created) || h.Uid != 0 {
			t.Errorf("%s: time %s, uid %d", h.Name, h.ModTime, h.Uid)
		}
	}
	if h := files["manager"]; h == nil || h.Mode != 0o755 || h.Size != int64(len("binary")) {
		t.Errorf("/manager: %+v", h)
	}
	for _, name := range []string{"etc/passwd", "etc/group", "tmp/"} {
		if files[name] == nil {
			t.Errorf("%s missing", name)
		}
	}
}
