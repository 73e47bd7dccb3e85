package msb

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestExecTimeout(t *testing.T) {
	sb := agentSandbox(t)
	tests := []struct {
		name    string
		args    []string
		timeout time.Duration
		wantErr bool
		maxWait time.Duration
		stdout  string
	}{
		{name: "finishes in time", args: []string{"-c", "echo ok"}, timeout: 10 * time.Second, stdout: "ok\n", maxWait: 5 * time.Second},
		{name: "killed with its group", args: []string{"-c", "echo started; sleep 30 & sleep 30"}, timeout: 300 * time.Millisecond,
			wantErr: true, stdout: "started\n", maxWait: 3 * time.Second},
		// A process outside the group keeps stdout open: the drain gives up.
		{name: "output held open", args: []string{"-c", "setsid sleep 5 & sleep 30"}, timeout: 300 * time.Millisecond,
			wantErr: true, maxWait: 3 * time.Second},
	}
	old := drainTimeout
	drainTimeout = time.Second
	t.Cleanup(func() { drainTimeout = old })
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			res, err := sb.Exec(t.Context(), "sh", tc.args, WithTimeout(tc.timeout))
			if took := time.Since(start); took > tc.maxWait {
				t.Errorf("Exec took %v; want at most %v", took, tc.maxWait)
			}
			if !tc.wantErr {
				if err != nil || string(res.Stdout) != tc.stdout {
					t.Fatalf("Exec = %+v, %v; want stdout %q", res, err, tc.stdout)
				}
				return
			}
			var te *TimeoutError
			if !errors.Is(err, ErrTimeout) || !errors.As(err, &te) || te.Timeout != tc.timeout || te.ExitCode() != 124 {
				t.Fatalf("Exec error = %v; want a *TimeoutError for %v", err, tc.timeout)
			}
			if want := "command timed out after " + tc.timeout.String(); err.Error() != want {
				t.Errorf("error text %q; want %q", err, want)
			}
			if res == nil || !strings.HasPrefix(string(res.Stdout), tc.stdout) {
				t.Errorf("result %+v; want the output so far %q", res, tc.stdout)
			}
		})
	}
}

func TestExecStreamTimeout(t *testing.T) {
	sb := agentSandbox(t)
	ex, err := sb.ExecStream(t.Context(), "sleep", []string{"30"}, WithTimeout(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	// Stdin stays open: the timeout must fire anyway.
	code, err := ex.Wait()
	if !errors.Is(err, ErrTimeout) || code != 137 {
		t.Errorf("Wait = %d, %v; want 137 and ErrTimeout", code, err)
	}
}
