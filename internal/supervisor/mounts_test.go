package supervisor

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/msb-go/msb/internal/home"
	"github.com/msb-go/msb/internal/launch"
	"github.com/msb-go/msb/internal/machine"
)

// testHome is an MSB_HOME with the sandbox directory of "box".
func testHome(t *testing.T) home.Home {
	t.Helper()
	h, err := home.At(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(h.SandboxDir("box"), 0o700); err != nil {
		t.Fatal(err)
	}
	return h
}

func TestMountsLiveRoot(t *testing.T) {
	root, vol := t.TempDir(), t.TempDir()
	h := testHome(t)
	rt := machine.Share{Tag: "msb_runtime", Path: h.GuestDir("box"), QuotaBytes: runtimeQuota}
	tests := []struct {
		name       string
		l          launch.Launch
		wantShares []machine.Share
		wantEnv    []string
	}{
		{
			name:       "live root before volumes",
			l:          launch.Launch{RootShare: root, Mounts: []launch.Mount{{Kind: launch.MountBind, Source: vol, Target: "/data"}}},
			wantShares: []machine.Share{{Tag: "msb_root", Path: root}, rt, {Tag: "msb_vol_0", Path: vol}},
			wantEnv:    []string{"MSB_FS_ROOT=tag=msb_root", "MSB_DIR_MOUNTS=msb_vol_0:/data"},
		},
		{
			name:       "read-only live root",
			l:          launch.Launch{RootShare: root, RootReadOnly: true},
			wantShares: []machine.Share{{Tag: "msb_root", Path: root, ReadOnly: true}, rt},
			wantEnv:    []string{"MSB_FS_ROOT=tag=msb_root,ro"},
		},
		{
			name:       "no live root",
			l:          launch.Launch{Lower: "/l", Upper: "/u"},
			wantShares: []machine.Share{rt},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.l.Name = "box"
			s := &sandbox{launch: &tc.l, home: h}
			var spec machine.Spec
			env, err := s.mounts(&spec)
			if err != nil {
				t.Fatalf("mounts: %v", err)
			}
			if d := cmp.Diff(tc.wantShares, spec.Shares); d != "" {
				t.Errorf("shares (-want +got):\n%s", d)
			}
			if d := cmp.Diff(tc.wantEnv, env); d != "" {
				t.Errorf("env (-want +got):\n%s", d)
			}
		})
	}
}

func TestMountsLiveRootMissing(t *testing.T) {
	s := &sandbox{launch: &launch.Launch{Name: "box", RootShare: filepath.Join(t.TempDir(), "gone")}, home: testHome(t)}
	_, err := s.mounts(&machine.Spec{})
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("mounts error = %v; want ErrNotExist", err)
	}
	if be := launch.NewBootError(err); be.Stage != launch.StageImage {
		t.Errorf("boot stage = %q; want %q", be.Stage, launch.StageImage)
	}
}
