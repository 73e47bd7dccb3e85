package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/msb-go/msb"
	"github.com/msb-go/msb/internal/launch"
	"github.com/msb-go/msb/internal/store"
)

func TestParseMemory(t *testing.T) {
	tests := []struct {
		in   string
		want int
		err  bool
	}{
		{"512", 512, false}, {"512M", 512, false}, {"512MiB", 512, false}, {"512mb", 512, false},
		{"1G", 1024, false}, {"2GiB", 2048, false}, {"1gb", 1024, false},
		{"", 0, true}, {"-1", 0, true}, {"0", 0, true}, {"1T", 0, true}, {"lots", 0, true},
	}
	for _, tc := range tests {
		got, err := parseMemory(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("parseMemory(%q) = %d, %v; want %d, err=%v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func TestParseSources(t *testing.T) {
	tests := []struct {
		in   string
		want launch.SourceMask
		err  bool
	}{
		{"stdout", launch.MaskStdout, false},
		{"stdout,stderr", launch.MaskStdout | launch.MaskStderr, false},
		{"system", launch.MaskSystem, false},
		{"all", launch.AllSources, false},
		{"", launch.DefaultSources, false},
		{"stdout,bogus", 0, true},
	}
	for _, tc := range tests {
		got, err := parseSources(tc.in)
		if (err != nil) != tc.err || (!tc.err && got != tc.want) {
			t.Errorf("parseSources(%q) = %v, %v; want %v, err=%v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func TestRenderError(t *testing.T) {
	enoent := 2
	tests := []struct {
		name     string
		err      error
		wantCode int
		want     []string
	}{
		{
			name:     "boot error with hint",
			err:      &msb.BootError{Name: "dev", Stage: "image", Errno: &enoent, Message: "rootfs: lower image: missing", Hint: "rootfs not found"},
			wantCode: 1,
			want:     []string{`error: failed to start "dev"`, "→ image: rootfs: lower image: missing", "→ hint: rootfs not found", "msb logs --source system dev"},
		},
		{
			name:     "boot error without hint",
			err:      &msb.BootError{Name: "x", Stage: "other", Message: "boom"},
			wantCode: 1,
			want:     []string{"→ other: boom", "msb logs --source system x"},
		},
		{
			name:     "exec not found",
			err:      &msb.ExecFailed{Cmd: "pyhton", Kind: "not_found", Errno: 2, ErrnoName: "ENOENT", Message: `spawn "pyhton": no such file`},
			wantCode: 127,
			want:     []string{`error: failed to exec "pyhton"`, "command not found", "(ENOENT)", "PATH"},
		},
		{
			name:     "exec not executable",
			err:      &msb.ExecFailed{Cmd: "./a", Kind: "not_executable", Message: "exec format error"},
			wantCode: 126,
			want:     []string{"not executable", "architecture"},
		},
		{
			name:     "not found sandbox",
			err:      errors.Join(msb.ErrNotFound),
			wantCode: 1,
			want:     []string{"msb ls"},
		},
		{
			name:     "store locked",
			err:      fmt.Errorf("create sandbox %q: %w: database is locked", "x", store.ErrBusy),
			wantCode: 1,
			want:     []string{"database is locked", "write lock", "retry"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			code := renderError(&buf, tc.err)
			if code != tc.wantCode {
				t.Errorf("exit code = %d; want %d", code, tc.wantCode)
			}
			for _, w := range tc.want {
				if !strings.Contains(buf.String(), w) {
					t.Errorf("output %q lacks %q", buf.String(), w)
				}
			}
		})
	}
}

func TestHelpAndUnknownCommand(t *testing.T) {
	var out, errb bytes.Buffer
	if code := Run(context.Background(), []string{"--help"}, Stdio{In: strings.NewReader(""), Out: &out, Err: &errb}); code != 0 {
		t.Fatalf("msb --help exit %d", code)
	}
	for _, cmd := range []string{"run", "create", "start", "stop", "rm", "ls", "exec", "logs", "volume"} {
		if !strings.Contains(out.String(), cmd) {
			t.Errorf("help lacks %q:\n%s", cmd, out.String())
		}
	}
	if strings.Contains(out.String(), "sandbox ") && strings.Contains(out.String(), "internal use") {
		t.Errorf("help shows the hidden sandbox command")
	}
	out.Reset()
	if code := Run(context.Background(), []string{"frobnicate"}, Stdio{In: strings.NewReader(""), Out: &out, Err: &errb}); code == 0 {
		t.Errorf("unknown command exited 0")
	}
	errb.Reset()
	code := Run(context.Background(), []string{"run", "--", "true"}, Stdio{In: strings.NewReader(""), Out: &out, Err: &errb})
	if code == 0 || !strings.Contains(errb.String(), "--rootfs") {
		t.Errorf("run without a rootfs: exit %d, stderr %q; want an error naming --rootfs", code, errb.String())
	}
	errb.Reset()
	code = Run(context.Background(), []string{"run", "--rootfs-live", "alpine", "--", "true"}, Stdio{In: strings.NewReader(""), Out: &out, Err: &errb})
	if code == 0 || !strings.Contains(errb.String(), "--rootfs-live needs --rootfs DIR") {
		t.Errorf("run --rootfs-live IMAGE: exit %d, stderr %q; want the live root error", code, errb.String())
	}
}
