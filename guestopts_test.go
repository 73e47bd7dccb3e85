package msb

import (
	"reflect"
	"testing"

	"github.com/msb-go/msb/internal/sandbox"
)

func TestGuestOptions(t *testing.T) {
	var c config
	for _, o := range []Option{
		WithRlimit("nofile", 1024, 4096), WithRlimit("core", RlimitUnlimited, RlimitUnlimited),
		WithRlimit("nofile", 10, 20), // replaces the first
		WithHostname("box"), WithEntrypoint("/bin/tini", "--"), WithShell("/bin/bash"),
		WithLogLevel(LogDebug), WithInit("auto", "--log-target=console"), WithInitEnv("A", "1"),
		WithLabel("team", "x"), WithLabels(map[string]string{"env": "dev"}),
	} {
		o(&c)
	}
	got := c.sandboxConfig()
	want := sandbox.Config{
		Rlimits:    []sandbox.Rlimit{{Resource: "core", Soft: RlimitUnlimited, Hard: RlimitUnlimited}, {Resource: "nofile", Soft: 10, Hard: 20}},
		Hostname:   "box",
		Entrypoint: []string{"/bin/tini", "--"},
		Shell:      "/bin/bash",
		LogLevel:   "debug",
		Init:       &sandbox.Init{Path: "auto", Args: []string{"--log-target=console"}, Env: []string{"A=1"}},
		Labels:     map[string]string{"team": "x", "env": "dev"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("sandboxConfig() = %+v; want %+v", got, want)
	}
}

func TestMatchLabels(t *testing.T) {
	labels := map[string]string{"team": "x", "env": "dev"}
	tests := []struct {
		sel  map[string]string
		want bool
	}{
		{nil, true},
		{map[string]string{"team": "x"}, true},
		{map[string]string{"team": "x", "env": "dev"}, true},
		{map[string]string{"team": "x", "env": "prod"}, false},
		{map[string]string{"owner": ""}, false},
	}
	for _, tc := range tests {
		if got := matchLabels(labels, tc.sel); got != tc.want {
			t.Errorf("matchLabels(%v, %v) = %v; want %v", labels, tc.sel, got, tc.want)
		}
	}
}

func TestExecRlimitChecked(t *testing.T) {
	s := &Sandbox{}
	req, _ := s.request("true", nil, []ExecOption{WithExecRlimit("nofile", 1, 2)})
	if len(req.Rlimits) != 1 || req.Rlimits[0].Resource != "nofile" || req.Rlimits[0].Hard != 2 {
		t.Errorf("request rlimits = %+v; want nofile 1:2", req.Rlimits)
	}
	if err := checkExecRlimits(req.Rlimits); err != nil {
		t.Errorf("checkExecRlimits(valid) = %v", err)
	}
	req, _ = s.request("true", nil, []ExecOption{WithExecRlimit("nofiles", 1, 2)})
	if err := checkExecRlimits(req.Rlimits); err == nil {
		t.Error("checkExecRlimits(unknown) = nil; want an error")
	}
}
