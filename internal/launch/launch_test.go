package launch

import (
	"bytes"
	"strings"
	"testing"
)

func TestReadLaunchRootShare(t *testing.T) {
	tests := []struct {
		name    string
		l       Launch
		wantErr string
	}{
		{name: "root share", l: Launch{RootShare: "/srv/root"}},
		{name: "root share ro", l: Launch{RootShare: "/srv/root", RootReadOnly: true}},
		{name: "root images", l: Launch{Lower: "/l.erofs", Upper: "/u.ext4"}},
		{name: "share and images", l: Launch{RootShare: "/srv/root", Lower: "/l.erofs", Upper: "/u.ext4"},
			wantErr: "a root share excludes root images"},
		{name: "relative share", l: Launch{RootShare: "root"}, wantErr: `root share "root": not an absolute path`},
		{name: "ro without share", l: Launch{RootReadOnly: true}, wantErr: "root_read_only without a root share"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.l.Name, tc.l.Home = "sb", "/home/msb"
			var buf bytes.Buffer
			if err := WriteLaunch(&buf, &tc.l); err != nil {
				t.Fatal(err)
			}
			got, err := ReadLaunch(&buf)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("ReadLaunch: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("ReadLaunch error = %v; want it to contain %q", err, tc.wantErr)
			case err == nil && (got.RootShare != tc.l.RootShare || got.RootReadOnly != tc.l.RootReadOnly):
				t.Errorf("round trip = %q ro=%v; want %q ro=%v", got.RootShare, got.RootReadOnly, tc.l.RootShare, tc.l.RootReadOnly)
			}
		})
	}
}
