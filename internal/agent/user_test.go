package agent

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestResolveUser(t *testing.T) {
	dir := t.TempDir()
	passwd := filepath.Join(dir, "passwd")
	group := filepath.Join(dir, "group")
	os.WriteFile(passwd, []byte(strings.Join([]string{
		"# comment",
		"root:x:0:0:root:/root:/bin/sh",
		"app:x:1000:1000:App:/home/app:/bin/sh",
		"broken line",
		"bad:x:notanumber:1:::",
		"nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin",
	}, "\n")), 0o644)
	os.WriteFile(group, []byte(strings.Join([]string{
		"root:x:0:",
		"app:x:1000:",
		"docker:x:998:app,other",
		"audio:x:29:other",
		"wheel:x:10:app",
		"nogroup:x:65534:",
	}, "\n")), 0o644)
	tests := []struct {
		spec    string
		want    credential
		wantErr error
	}{
		{spec: "root", want: credential{UID: 0, GID: 0, Groups: []uint32{0}, Home: "/root"}},
		{spec: "app", want: credential{UID: 1000, GID: 1000, Groups: []uint32{1000, 998, 10}, Home: "/home/app"}},
		{spec: "app:docker", want: credential{UID: 1000, GID: 998, Groups: []uint32{998, 10}, Home: "/home/app"}},
		{spec: "1000", want: credential{UID: 1000, GID: 1000, Home: "/home/app"}},
		{spec: "1000:29", want: credential{UID: 1000, GID: 29, Home: "/home/app"}},
		{spec: "4242", want: credential{UID: 4242, GID: 0}},
		{spec: "4242:nogroup", want: credential{UID: 4242, GID: 65534}},
		{spec: "65534", want: credential{UID: 65534, GID: 65534, Home: "/nonexistent"}},
		{spec: "ghost", wantErr: ErrUnknownUser},
		{spec: "app:ghosts", wantErr: ErrUnknownGroup},
		{spec: "bad", wantErr: ErrUnknownUser},
	}
	for _, tc := range tests {
		t.Run(tc.spec, func(t *testing.T) {
			got, err := resolveUser(tc.spec, passwd, group)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("got error %v; want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("credential (-want +got):\n%s", d)
			}
		})
	}
	t.Run("no account files", func(t *testing.T) {
		got, err := resolveUser("0", filepath.Join(dir, "none"), filepath.Join(dir, "none"))
		if err != nil || got.UID != 0 || got.Home != "" {
			t.Errorf("got %+v, %v; want uid 0 without home", got, err)
		}
		if _, err := resolveUser("root", filepath.Join(dir, "none"), filepath.Join(dir, "none")); !errors.Is(err, ErrUnknownUser) {
			t.Errorf("named user without passwd: got %v; want ErrUnknownUser", err)
		}
	})
}

func FuzzParseAccountLines(f *testing.F) {
	f.Add("root:x:0:0:root:/root:/bin/sh\nx\n#c\n")
	f.Add("docker:x:998:app,other\n")
	f.Fuzz(func(t *testing.T, s string) {
		parseAccountLines(strings.NewReader(s), func(fields []string) {
			if len(fields) == 0 {
				t.Errorf("empty field list")
			}
		})
	})
}

// TestResolveUserSeesChanges: the parsed account files are cached, and a
// user added, a file replaced by rename, or a file removed is seen by the
// next resolution.
func TestResolveUserSeesChanges(t *testing.T) {
	dir := t.TempDir()
	passwd, group := filepath.Join(dir, "passwd"), filepath.Join(dir, "group")
	write := func(name, data string) {
		t.Helper()
		if err := os.WriteFile(name, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(passwd, "root:x:0:0:root:/root:/bin/sh\n")
	write(group, "root:x:0:\n")
	home := func(spec string) string {
		t.Helper()
		c, err := resolveUser(spec, passwd, group)
		if err != nil {
			return "error: " + err.Error()
		}
		return c.Home
	}
	if got := home("0"); got != "/root" {
		t.Fatalf("uid 0 home = %q; want /root", got)
	}
	if got := home("app"); !strings.Contains(got, ErrUnknownUser.Error()) {
		t.Fatalf("app before it exists = %q; want an unknown-user error", got)
	}
	// Appended in place (same inode).
	f, err := os.OpenFile(passwd, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("app:x:1000:1000::/home/app:/bin/sh\n")
	f.Close()
	if got := home("app"); got != "/home/app" {
		t.Errorf("app after useradd = %q; want /home/app", got)
	}
	// Replaced by rename, same size as before (as vipw and shadow-utils do).
	tmp := filepath.Join(dir, "passwd.new")
	write(tmp, "root:x:0:0:root:/ROOT:/bin/sh\napp:x:1000:1000::/home/APP:/bin/sh\n")
	if err := os.Rename(tmp, passwd); err != nil {
		t.Fatal(err)
	}
	if got := home("app"); got != "/home/APP" {
		t.Errorf("app after the file was replaced = %q; want /home/APP", got)
	}
	if err := os.Remove(passwd); err != nil {
		t.Fatal(err)
	}
	if got := home("0"); got != "" {
		t.Errorf("uid 0 without a passwd file: home %q; want none", got)
	}
}
