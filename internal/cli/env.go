package cli

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"
)

// Help texts of -e and --env-file, shared by run, create and exec.
const (
	envHelp     = "environment variable KEY=VALUE, or KEY to pass your own value of KEY (it then stays out of msb's command line)"
	envFileHelp = "read environment variables from FILE: KEY=VALUE lines (value taken literally), KEY lines (your own value), blank lines and # comments; -e wins (repeatable)"
)

// resolveEnv turns --env-file files and then -e flags (so -e wins) into
// KEY=VALUE pairs. An entry that is only KEY takes its value from the host
// environment through lookup, so secrets need not appear in msb's argv; a
// KEY the host does not have is an error naming it.
func resolveEnv(flags, files []string, lookup func(string) (string, bool)) ([]string, error) {
	var out []string
	for _, path := range files {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("--env-file: %w", err)
		}
		kvs, err := parseEnvFile(f, path, lookup)
		f.Close()
		if err != nil {
			return nil, err
		}
		out = append(out, kvs...)
	}
	for _, e := range flags {
		kv, err := envEntry(e, lookup)
		if err != nil {
			return nil, fmt.Errorf("-e %q: %w", e, err)
		}
		out = append(out, kv)
	}
	return out, nil
}

// parseEnvFile reads KEY=VALUE lines (the value is taken literally, up to
// the end of the line), KEY lines (the host's value), blank lines and
// lines starting with #.
func parseEnvFile(r io.Reader, name string, lookup func(string) (string, bool)) ([]string, error) {
	var out []string
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSuffix(sc.Text(), "\r")
		line = strings.TrimLeft(line, " \t")
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		kv, err := envEntry(line, lookup)
		if err != nil {
			return nil, fmt.Errorf("--env-file %s:%d: %w", name, n, err)
		}
		out = append(out, kv)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("--env-file %s: %w", name, err)
	}
	return out, nil
}

// envEntry resolves one KEY=VALUE or KEY entry.
func envEntry(e string, lookup func(string) (string, bool)) (string, error) {
	k, v, hasValue := strings.Cut(e, "=")
	if k == "" || strings.ContainsAny(k, " \t") {
		return "", fmt.Errorf("want KEY=VALUE or KEY (a variable of your environment)")
	}
	if !hasValue {
		var ok bool
		if v, ok = lookup(k); !ok {
			return "", fmt.Errorf("%s is not set in your environment (give -e %s=VALUE)", k, k)
		}
	}
	return k + "=" + v, nil
}
