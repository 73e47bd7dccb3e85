package image

import (
	"fmt"
	"os"
	"strings"
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
)

// EnvOptions returns the Options set by MSB_INSECURE_REGISTRIES,
// MSB_REGISTRY_MIRRORS and MSB_REGISTRY_CA_FILES, so every command that
// pulls (msb pull, msb run, the SDK) sees the same registry settings.
func EnvOptions() (Options, error) {
	var o Options
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
