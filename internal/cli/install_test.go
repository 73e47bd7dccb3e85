package cli

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestInstallUninstall(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(binDirEnv, dir)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}

	if code, out, errs := runMSB(t, "install", "docker.io/library/python:3.12"); code != 0 || !strings.Contains(out, "Installed "+filepath.Join(dir, "python")) {
		t.Fatalf("install python: exit %d, %q, %q", code, out, errs)
	}
	if code, _, errs := runMSB(t, "install", "-n", "hello", "alpine:3.20", "--", "echo", "it's"); code != 0 {
		t.Fatalf("install hello: exit %d, %q", code, errs)
	}
	for name, want := range map[string]string{
		"python": "#!/bin/sh\n" + aliasMarker + "\n# image: docker.io/library/python:3.12\n" +
			"if [ $# -eq 0 ]; then exec '" + self + "' run 'docker.io/library/python:3.12'; fi\n" +
			"exec '" + self + "' run 'docker.io/library/python:3.12' -- \"$@\"\n",
		"hello": "#!/bin/sh\n" + aliasMarker + "\n# image: alpine:3.20\n" +
			"exec '" + self + "' run 'alpine:3.20' -- 'echo' 'it'\\''s' \"$@\"\n",
	} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != want {
			t.Errorf("%s script:\n%s\nwant:\n%s", name, b, want)
		}
		if st, _ := os.Stat(filepath.Join(dir, name)); st.Mode().Perm()&0o100 == 0 {
			t.Errorf("%s mode %v: not executable", name, st.Mode())
		}
	}

	// Its own alias is replaced; a file it did not write is not.
	if code, _, errs := runMSB(t, "install", "python:3.13"); code != 0 {
		t.Errorf("reinstall python: exit %d, %q", code, errs)
	}
	foreign := filepath.Join(dir, "jq")
	if err := os.WriteFile(foreign, []byte("#!/bin/sh\necho mine\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if code, _, errs := runMSB(t, "install", "ghcr.io/jqlang/jq:1.7"); code == 0 || !strings.Contains(errs, "msb did not write it") {
		t.Errorf("install over a foreign jq: exit %d, %q; want a refusal", code, errs)
	}
	if code, _, errs := runMSB(t, "uninstall", "jq"); code == 0 || !strings.Contains(errs, "was not written by msb install") {
		t.Errorf("uninstall foreign jq: exit %d, %q; want a refusal", code, errs)
	}
	if b, _ := os.ReadFile(foreign); string(b) != "#!/bin/sh\necho mine\n" {
		t.Errorf("foreign jq changed: %q", b)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"install", "alpine", "echo"}, "after --"},
		{[]string{"install", "-n", "../evil", "alpine"}, "alias name"},
		{[]string{"uninstall", "nope"}, "no such alias"},
		{[]string{"uninstall", "../jq"}, "not an alias name"},
	} {
		if code, _, errs := runMSB(t, tc.args...); code == 0 || !strings.Contains(errs, tc.want) {
			t.Errorf("msb %v: exit %d, %q; want %q", tc.args, code, errs, tc.want)
		}
	}

	if code, out, errs := runMSB(t, "uninstall", "python", "hello"); code != 0 || strings.Count(out, "Removed") != 2 {
		t.Errorf("uninstall: exit %d, %q, %q", code, out, errs)
	}
	left, _ := os.ReadDir(dir)
	if len(left) != 1 || left[0].Name() != "jq" {
		t.Errorf("left in %s: %v; want only jq", dir, left)
	}
}

// TestAliasScriptRuns runs generated scripts with sh against a stand-in msb
// that prints its arguments, one per line.
func TestAliasScriptRuns(t *testing.T) {
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh")
	}
	dir := t.TempDir()
	fake := filepath.Join(dir, "fake msb")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\nfor a in \"$@\"; do echo \"[$a]\"; done\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		fixed, args []string
		want        string
	}{
		{nil, nil, "[run]\n[img:1]\n"},
		{nil, []string{"-c", "print('x y')"}, "[run]\n[img:1]\n[--]\n[-c]\n[print('x y')]\n"},
		{[]string{"sh", "-c", "$HOME"}, []string{"a b"}, "[run]\n[img:1]\n[--]\n[sh]\n[-c]\n[$HOME]\n[a b]\n"},
	} {
		script := filepath.Join(dir, "alias")
		if err := os.WriteFile(script, []byte(aliasScript(fake, "img:1", tc.fixed)), 0o755); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(script, tc.args...).Output()
		if err != nil {
			t.Fatal(err)
		}
		if string(out) != tc.want {
			t.Errorf("alias %q %q ran %q; want %q", tc.fixed, tc.args, out, tc.want)
		}
	}
}

func TestAliasName(t *testing.T) {
	for in, want := range map[string]string{
		"python":                             "python",
		"python:3.12":                        "python",
		"docker.io/library/python:3.12":      "python",
		"localhost:5000/tools/jq":            "jq",
		"ghcr.io/org/tool:1@sha256:abcdef01": "tool",
	} {
		if got := aliasName(in); got != want {
			t.Errorf("aliasName(%q) = %q; want %q", in, got, want)
		}
	}
}
