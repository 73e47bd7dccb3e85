package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/msb-go/msb"
	"github.com/msb-go/msb/internal/home"
	"github.com/msb-go/msb/internal/launch"
	"github.com/msb-go/msb/internal/store"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata")

// golden compares got with testdata/NAME, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s (-want +got):\n%s", path, diff)
	}
}

func TestHelpGolden(t *testing.T) {
	t.Setenv(home.EnvVar, t.TempDir())
	for _, cmd := range []string{"run", "create", "exec", "inspect", "status", "ls", "shell", "attach", "restart", "touch"} {
		t.Run(cmd, func(t *testing.T) {
			code, out, errs := runMSB(t, cmd, "--help")
			if code != 0 {
				t.Fatalf("msb %s --help: exit %d, %s", cmd, code, errs)
			}
			golden(t, "help/"+cmd+".golden", out)
		})
	}
	// ps is status, and --background is the -d helper's, not the user's.
	_, ps, _ := runMSB(t, "ps", "--help")
	_, status, _ := runMSB(t, "status", "--help")
	if ps != status {
		t.Errorf("msb ps --help differs from msb status --help")
	}
	if _, out, _ := runMSB(t, "exec", "--help"); strings.Contains(out, "--background") {
		t.Errorf("exec --help shows the hidden --background flag")
	}
}

// storedSandboxes inserts, without booting anything, a stopped image
// sandbox "web" whose last run failed and whose last start failed too, and
// a minimal directory sandbox "bare".
func storedSandboxes(t *testing.T) home.Home {
	t.Helper()
	root := t.TempDir()
	t.Setenv(home.EnvVar, root)
	h, err := home.At(root)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(t.Context(), h.DBPath())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	web := `{"image":"python:3.12","image_digest":"sha256:0123456789abcdef","command":["python3"],
		"vcpus":2,"memory_mib":1024,"env":["PATH=/usr/bin","API_TOKEN=hunter2","PATH=/bin"],
		"workdir":"/app","user":"1000:1000","idle_timeout":300000000000,"max_duration":3600000000000,
		"vmm":"kvm","network":{"rules":["allow@public:tcp:443"],"default_egress":"deny",
		"ports":[{"host_port":8080,"guest_port":80,"protocol":"tcp"}]},
		"mounts":[{"kind":"bind","source":"/srv/data","target":"/data","read_only":true},
		{"kind":"tmpfs","target":"/scratch","size_mib":64}],
		"rlimits":[{"resource":"nofile","soft":1024,"hard":4096},{"resource":"core","soft":18446744073709551615,"hard":18446744073709551615}],
		"hostname":"web.local","entrypoint":["/usr/bin/tini","--"],"shell":"/bin/bash","log_level":"debug",
		"init":{"path":"auto","args":["--log-target=console"]}}`
	sb, err := st.CreateSandbox(context.Background(), "web", json.RawMessage(web), store.StatusStopped)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.SetSandboxLabels(context.Background(), sb.ID, map[string]string{"team": "web", "env": "prod"}); err != nil {
		t.Fatal(err)
	}
	run, err := st.InsertRun(context.Background(), sb.ID, 4242)
	if err != nil {
		t.Fatal(err)
	}
	one := 1
	if err := st.FinishRun(context.Background(), run.ID, store.ReasonFailed, &one); err != nil {
		t.Fatal(err)
	}
	enoent := 2
	if err := h.EnsureSandboxDirs("web"); err != nil {
		t.Fatal(err)
	}
	if err := launch.WriteBootError(h.BootErrorPath("web"), launch.BootError{Time: time.Now(), Stage: launch.StageMount,
		Errno: &enoent, Message: "mount data: /srv/data: no such file or directory"}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateSandbox(context.Background(), "bare", json.RawMessage(`{"rootfs":"/r","vcpus":1,"memory_mib":512,"network":{"disabled":true}}`), store.StatusStopped); err != nil {
		t.Fatal(err)
	}
	return h
}

// timestamps matches the RFC 3339 times of inspect output, which change
// from run to run.
var timestamps = regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)`)

func TestInspect(t *testing.T) {
	storedSandboxes(t)
	for _, name := range []string{"web", "bare"} {
		t.Run(name, func(t *testing.T) {
			code, out, errs := runMSB(t, "inspect", "--format", "json", name)
			if code != 0 {
				t.Fatalf("inspect --format json: exit %d, %s", code, errs)
			}
			var v map[string]any
			if err := json.Unmarshal([]byte(out), &v); err != nil {
				t.Fatalf("inspect JSON does not parse: %v\n%s", err, out)
			}
			if v["status"] != "Stopped" {
				t.Errorf("status = %v; want Stopped", v["status"])
			}
			if strings.Contains(out, "hunter2") {
				t.Errorf("inspect shows an env value:\n%s", out)
			}
			golden(t, "inspect/"+name+".json", timestamps.ReplaceAllString(out, "TIME"))

			code, out, errs = runMSB(t, "inspect", name)
			if code != 0 {
				t.Fatalf("inspect: exit %d, %s", code, errs)
			}
			if strings.Contains(out, "hunter2") {
				t.Errorf("inspect shows an env value:\n%s", out)
			}
			golden(t, "inspect/"+name+".txt", timestamps.ReplaceAllString(out, "TIME"))
		})
	}
	if code, _, errs := runMSB(t, "inspect", "nope"); code != 1 || !strings.Contains(errs, "msb ls") {
		t.Errorf("inspect of a missing sandbox: exit %d, %q", code, errs)
	}
	if code, _, errs := runMSB(t, "inspect", "--format", "yaml", "web"); code == 0 || !strings.Contains(errs, "--format") {
		t.Errorf("inspect --format yaml: exit %d, %q", code, errs)
	}
}

func TestStatusAndLsFilters(t *testing.T) {
	storedSandboxes(t)
	names := func(args ...string) []string {
		t.Helper()
		code, out, errs := runMSB(t, append(args, "--format", "json")...)
		if code != 0 {
			t.Fatalf("msb %v: exit %d, %s", args, code, errs)
		}
		var list []struct{ Name string }
		if err := json.Unmarshal([]byte(out), &list); err != nil {
			t.Fatalf("msb %v: %v", args, err)
		}
		var ns []string
		for _, s := range list {
			ns = append(ns, s.Name)
		}
		return ns
	}
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"ls"}, []string{"bare", "web"}},
		{[]string{"ls", "--running"}, nil},
		{[]string{"ls", "--stopped"}, []string{"bare", "web"}},
		{[]string{"status"}, nil},
		{[]string{"ps", "-a"}, []string{"bare", "web"}},
		{[]string{"status", "web"}, []string{"web"}},
	}
	for _, tc := range tests {
		if got := names(tc.args...); !slices.Equal(got, tc.want) {
			t.Errorf("msb %v = %q; want %q", tc.args, got, tc.want)
		}
	}
	if code, _, _ := runMSB(t, "ls", "--running", "--stopped"); code == 0 {
		t.Errorf("ls --running --stopped exited 0")
	}
	if code, _, errs := runMSB(t, "status", "nope"); code != 1 || !strings.Contains(errs, "not found") {
		t.Errorf("status nope: exit %d, %q", code, errs)
	}
	code, out, _ := runMSB(t, "ps")
	if code != 0 || strings.TrimSpace(out) != strings.TrimSpace(strings.Split(out, "\n")[0]) || !strings.HasPrefix(out, "NAME") {
		t.Errorf("ps with nothing running: exit %d, %q; want the header only", code, out)
	}
}

func TestResolveEnv(t *testing.T) {
	host := map[string]string{"TOKEN": "s3cret", "EMPTY": ""}
	lookup := func(k string) (string, bool) { v, ok := host[k]; return v, ok }
	dir := t.TempDir()
	file := filepath.Join(dir, "env")
	if err := os.WriteFile(file, []byte("# comment\n\n  A=1\r\nB=x=y # not a comment\nTOKEN\n\tC=  spaced  \nEMPTY\nD=\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad")
	if err := os.WriteFile(bad, []byte("A=1\nMISSING\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		flags   []string
		files   []string
		want    []string
		wantErr string
	}{
		{name: "key value", flags: []string{"A=1", "B=x=y", "C="}, want: []string{"A=1", "B=x=y", "C="}},
		{name: "key from host", flags: []string{"TOKEN", "EMPTY"}, want: []string{"TOKEN=s3cret", "EMPTY="}},
		{name: "missing in host", flags: []string{"NOPE"}, wantErr: "NOPE is not set in your environment"},
		{name: "empty key", flags: []string{"=v"}, wantErr: "want KEY=VALUE or KEY"},
		{name: "space in key", flags: []string{"A B=1"}, wantErr: "want KEY=VALUE or KEY"},
		{name: "file", files: []string{file},
			want: []string{"A=1", "B=x=y # not a comment", "TOKEN=s3cret", "C=  spaced  ", "EMPTY=", "D="}},
		{name: "flags after files", files: []string{file}, flags: []string{"A=2"},
			want: []string{"A=1", "B=x=y # not a comment", "TOKEN=s3cret", "C=  spaced  ", "EMPTY=", "D=", "A=2"}},
		{name: "file missing variable", files: []string{bad}, wantErr: bad + ":2: MISSING is not set"},
		{name: "no file", files: []string{filepath.Join(dir, "none")}, wantErr: "--env-file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := resolveEnv(tc.flags, tc.files, lookup)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("resolveEnv = %q, %v; want an error containing %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("resolveEnv (-want +got):\n%s", diff)
			}
		})
	}
}

func TestEnvFlagErrorsBeforeBoot(t *testing.T) {
	t.Setenv(home.EnvVar, t.TempDir())
	for _, args := range [][]string{
		{"run", "--rootfs", t.TempDir(), "-e", "MSB_TEST_SURELY_UNSET", "--", "true"},
		{"create", "--rootfs", t.TempDir(), "-e", "MSB_TEST_SURELY_UNSET"},
		{"exec", "-e", "MSB_TEST_SURELY_UNSET", "dev", "--", "true"},
	} {
		code, _, errs := runMSB(t, args...)
		if code != 1 || !strings.Contains(errs, "MSB_TEST_SURELY_UNSET is not set in your environment") {
			t.Errorf("msb %v: exit %d, stderr %q; want an error naming the variable", args, code, errs)
		}
	}
	if code, _, errs := runMSB(t, "run", "-d", "-t", "--rootfs", t.TempDir(), "--", "sh"); code == 0 || !strings.Contains(errs, "-d and -t") {
		t.Errorf("run -d -t: exit %d, %q", code, errs)
	}
}

func TestBackgroundArgs(t *testing.T) {
	got := backgroundArgs("dev", []string{"sh", "-c", "x"}, []string{"TOKEN", "A=1"}, []string{"f.env"},
		execFlags{workdir: "/w", user: "u", timeout: 90 * time.Second})
	want := []string{"--env", "TOKEN", "--env", "A=1", "--env-file", "f.env", "--workdir", "/w", "--user", "u",
		"--timeout", "1m30s", "dev", "--", "sh", "-c", "x"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("backgroundArgs (-want +got):\n%s", diff)
	}
}

func TestRenderTimeout(t *testing.T) {
	var b strings.Builder
	code := renderError(&b, fmt.Errorf("exec: %w", &msb.TimeoutError{Cmd: "sleep", Timeout: time.Second}))
	if code != 124 || b.String() != "error: command timed out after 1s\n" {
		t.Errorf("renderError(timeout) = %d, %q", code, b.String())
	}
}
