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
	if code, _, errs := runMSB(t, "install", "--tmp", "-n", "tmp-sh", "-c", "2", "-m", "1G", "-e", "A=it's", "-v", "./data:/data", "-w", "/w", "alpine:3.20"); code != 0 {
		t.Fatalf("install tmp-sh: exit %d, %q", code, errs)
	}
	cwd, _ := os.Getwd()
	q := "'" + self + "'"
	for name, want := range map[string]string{
		"python": "#!/bin/sh\n" + aliasMarker + "\n# image: docker.io/library/python:3.12\n# sandbox: python\n" +
			"msb=" + q + "\nrun() {\n\texec \"$msb\" run '--name' 'python' 'docker.io/library/python:3.12' \"$@\"\n}\n" +
			"if [ $# -eq 0 ]; then run; fi\nrun -- \"$@\"\n",
		"hello": "#!/bin/sh\n" + aliasMarker + "\n# image: alpine:3.20\n# sandbox: hello\n" +
			"msb=" + q + "\nrun() {\n\texec \"$msb\" run '--name' 'hello' 'alpine:3.20' \"$@\"\n}\n" +
			"run -- 'echo' 'it'\\''s' \"$@\"\n",
		"tmp-sh": "#!/bin/sh\n" + aliasMarker + "\n# image: alpine:3.20\n# sandbox: (new each call)\n" +
			"msb=" + q + "\nrun() {\n\texec \"$msb\" run '--cpus' '2' '--memory' '1G' '--volume' '" + filepath.Join(cwd, "data") + ":/data' " +
			"'--env' 'A=it'\\''s' '--workdir' '/w' 'alpine:3.20' \"$@\"\n}\n" +
			"if [ $# -eq 0 ]; then run; fi\nrun -- \"$@\"\n",
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

	// -l lists msb's aliases only.
	if err := os.WriteFile(filepath.Join(dir, "other"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	wantList := "NAME    IMAGE                          SANDBOX\n" +
		"hello   alpine:3.20                    hello\n" +
		"python  docker.io/library/python:3.12  python\n" +
		"tmp-sh  alpine:3.20                    (new each call)\n"
	if code, out, errs := runMSB(t, "install", "-l"); code != 0 || out != wantList {
		t.Errorf("install -l: exit %d, %q, %q; want\n%s", code, out, errs, wantList)
	}
	os.Remove(filepath.Join(dir, "other"))
	if code, _, errs := runMSB(t, "uninstall", "tmp-sh"); code != 0 {
		t.Fatalf("uninstall tmp-sh: exit %d, %q", code, errs)
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
		{[]string{"install"}, "requires at least 1 arg"},
		{[]string{"install", "-l", "alpine"}, "--list takes no IMAGE"},
		{[]string{"install", "-l", "--tmp"}, "--list takes no other flag"},
		{[]string{"install", "-m", "lots", "alpine"}, "--memory"},
		{[]string{"install", "-c", "0", "alpine"}, "--cpus 0"},
		{[]string{"install", "-v", "data", "alpine"}, "want SRC:DST"},
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
// that prints its arguments, one per line, and whose inspect finds sandbox
// NAME when the file exists-NAME is next to it.
func TestAliasScriptRuns(t *testing.T) {
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh")
	}
	dir := t.TempDir()
	fake := filepath.Join(dir, "fake msb")
	stub := "#!/bin/sh\nif [ \"$1\" = inspect ]; then [ -e \"$(dirname \"$0\")/exists-$2\" ]; exit; fi\n" +
		"for a in \"$@\"; do echo \"[$a]\"; done\n"
	if err := os.WriteFile(fake, []byte(stub), 0o755); err != nil {
		t.Fatal(err)
	}
	create := []string{"--memory", "1G", "--env", "Q='$HOME' \"x\""}
	for _, tc := range []struct {
		name   string
		spec   aliasSpec
		exists bool // the sandbox exists before the call
		args   []string
		want   string
	}{
		{"tmp image entrypoint", aliasSpec{image: "img:1"}, false, nil, "[run]\n[img:1]\n"},
		{"tmp caller args", aliasSpec{image: "img:1"}, false, []string{"-c", "print('x y')"}, "[run]\n[img:1]\n[--]\n[-c]\n[print('x y')]\n"},
		{"tmp fixed args", aliasSpec{image: "img:1", fixed: []string{"sh", "-c", "$HOME"}}, false, []string{"a b"},
			"[run]\n[img:1]\n[--]\n[sh]\n[-c]\n[$HOME]\n[a b]\n"},
		{"tmp create flags", aliasSpec{image: "img:1", create: create}, false, []string{"x"},
			"[run]\n[--memory]\n[1G]\n[--env]\n[Q='$HOME' \"x\"]\n[img:1]\n[--]\n[x]\n"},
		{"named", aliasSpec{image: "img:1", sandbox: "py"}, false, nil, "[run]\n[--name]\n[py]\n[img:1]\n"},
		{"named first call creates", aliasSpec{image: "img:1", sandbox: "py", create: create, fixed: []string{"py"}}, false, []string{"-V"},
			"[run]\n[--name]\n[py]\n[--memory]\n[1G]\n[--env]\n[Q='$HOME' \"x\"]\n[img:1]\n[--]\n[py]\n[-V]\n"},
		{"named later call reuses", aliasSpec{image: "img:1", sandbox: "py", create: create, fixed: []string{"py"}}, true, []string{"-V"},
			"[run]\n[--name]\n[py]\n[img:1]\n[--]\n[py]\n[-V]\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			marker := filepath.Join(dir, "exists-py")
			os.Remove(marker)
			if tc.exists {
				if err := os.WriteFile(marker, nil, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			script := filepath.Join(dir, "alias")
			if err := os.WriteFile(script, []byte(aliasScript(fake, tc.spec)), 0o755); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(script, tc.args...).Output()
			if err != nil {
				t.Fatal(err)
			}
			if string(out) != tc.want {
				t.Errorf("alias %+v %q ran %q; want %q", tc.spec, tc.args, out, tc.want)
			}
		})
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
