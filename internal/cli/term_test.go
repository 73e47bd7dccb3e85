package cli

import (
	"strings"
	"testing"
)

// TestTermCommandErrors covers what shell, attach, exec -t, run -t,
// restart and touch say before anything boots: a bad --detach-keys, no
// terminal for attach, a sandbox that is missing or not running.
func TestTermCommandErrors(t *testing.T) {
	storedSandboxes(t)
	tests := []struct {
		args     []string
		wantCode int
		wantErr  []string // substrings of stderr
	}{
		{args: []string{"attach", "--detach-keys", "ctrl-1", "bare"}, wantCode: 1,
			wantErr: []string{`--detach-keys: detach keys "ctrl-1": key "ctrl-1": no ctrl-1`}},
		{args: []string{"shell", "--detach-keys", "alt-x", "bare"}, wantCode: 1, wantErr: []string{`key "alt-x"`}},
		{args: []string{"exec", "-t", "--detach-keys", "ctrl-p,", "bare", "--", "sh"}, wantCode: 1, wantErr: []string{`key ""`}},
		{args: []string{"run", "-t", "--detach-keys", "", "--detach-keys", "x,yy", "--", "sh"}, wantCode: 1, wantErr: []string{`key "yy"`}},
		{args: []string{"attach", "bare"}, wantCode: 1,
			wantErr: []string{"attach: stdin is not a terminal", "msb exec NAME -- CMD"}},
		{args: []string{"shell", "bare"}, wantCode: 1,
			wantErr: []string{`sandbox "bare": sandbox is not running`, "msb start"}},
		{args: []string{"shell", "nosuch"}, wantCode: 1, wantErr: []string{"msb ls"}},
		{args: []string{"touch", "bare", "nosuch"}, wantCode: 1,
			wantErr: []string{`sandbox "bare": sandbox is not running`, "nosuch"}},
		{args: []string{"restart", "nosuch"}, wantCode: 1, wantErr: []string{"nosuch", "msb ls"}},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, _, errs := runMSB(t, tc.args...)
			if code != tc.wantCode {
				t.Errorf("exit code %d; want %d (stderr %q)", code, tc.wantCode, errs)
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(errs, w) {
					t.Errorf("stderr %q; want it to contain %q", errs, w)
				}
			}
		})
	}
}
