package image

import (
	"fmt"
	"os"
	"strings"

	"github.com/msb-go/msb/internal/rootfs"
)

// Environment variables read by EnvOptions.
const (
	// EnvInsecure lists registries allowed over plain HTTP, comma-separated.
	EnvInsecure = "MSB_INSECURE_REGISTRIES"
	// EnvMirrors maps registries to mirrors:
	// "docker.io=mirror.example:5000,mirror2.example;ghcr.io=m.example".
	EnvMirrors = "MSB_REGISTRY_MIRRORS"
	// EnvCAFiles lists extra CA certificate files, comma-separated.
	EnvCAFiles = "MSB_REGISTRY_CA_FILES"
	// EnvMaxPullBytes caps the compressed size of one image's blobs
	// (Options.MaxPullBytes). The build limits are rootfs.Env*.
	EnvMaxPullBytes = "MSB_IMAGE_MAX_PULL_BYTES"
)

// EnvOptions returns the Options set by MSB_INSECURE_REGISTRIES,
// MSB_REGISTRY_MIRRORS, MSB_REGISTRY_CA_FILES, MSB_IMAGE_MAX_PULL_BYTES and
// the MSB_IMAGE_* build limits (rootfs.LimitsFromEnv), so every command that
// pulls (msb pull, msb run, the SDK) sees the same settings.
func EnvOptions() (Options, error) {
	var o Options
	lim, err := rootfs.LimitsFromEnv()
	if err != nil {
		return Options{}, err
	}
	o.Limits = lim
	if v := os.Getenv(EnvMaxPullBytes); v != "" {
		n, err := rootfs.ParseSize(v)
		if err != nil {
			return Options{}, fmt.Errorf("%s: %w", EnvMaxPullBytes, err)
		}
		o.MaxPullBytes = n
	}
	o.Insecure = splitList(os.Getenv(EnvInsecure), ",")
	o.CAFiles = splitList(os.Getenv(EnvCAFiles), ",")
	for _, entry := range splitList(os.Getenv(EnvMirrors), ";") {
		reg, mirrors, ok := strings.Cut(entry, "=")
		if !ok {
			return Options{}, fmt.Errorf("%s: entry %q is not REGISTRY=MIRROR[,MIRROR...]", EnvMirrors, entry)
		}
		r, err := normalizeRegistry(reg)
		if err != nil {
			return Options{}, fmt.Errorf("%s: %w", EnvMirrors, err)
		}
		for _, m := range splitList(mirrors, ",") {
			mr, err := normalizeRegistry(m)
			if err != nil {
				return Options{}, fmt.Errorf("%s: %w", EnvMirrors, err)
			}
			if o.Mirrors == nil {
				o.Mirrors = map[string][]string{}
			}
			o.Mirrors[r] = append(o.Mirrors[r], mr)
		}
	}
	return o, nil
}

func splitList(s, sep string) []string {
	var out []string
	for _, f := range strings.Split(s, sep) {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
