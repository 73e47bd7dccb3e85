package sandbox

import (
	"slices"
	"strings"
	"testing"

	"github.com/msb-go/msb/internal/agentproto"
	"github.com/msb-go/msb/internal/image"
)

func TestValidateGuestOptions(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr string // "" = valid
	}{
		{name: "empty", cfg: Config{}},
		{name: "all", cfg: Config{Rlimits: []Rlimit{{"nofile", 1, 2}, {"core", agentproto.RlimitUnlimited, agentproto.RlimitUnlimited}},
			Hostname: "web-1.local", LogLevel: "trace", Shell: "/bin/bash", Entrypoint: []string{"/x"},
			Init: &Init{Path: "auto", Env: []string{"A=1"}}, Labels: map[string]string{"team": "x"}}},
		{name: "unknown rlimit", cfg: Config{Rlimits: []Rlimit{{"files", 1, 1}}}, wantErr: "unknown resource"},
		{name: "dup rlimit", cfg: Config{Rlimits: []Rlimit{{"nofile", 1, 1}, {"nofile", 2, 2}}}, wantErr: "twice"},
		{name: "soft above hard", cfg: Config{Rlimits: []Rlimit{{"nofile", 2, 1}}}, wantErr: "above hard"},
		{name: "hostname dash", cfg: Config{Hostname: "-x"}, wantErr: "hostname"},
		{name: "hostname long", cfg: Config{Hostname: strings.Repeat("a", 65)}, wantErr: "64"},
		{name: "hostname space", cfg: Config{Hostname: "a b"}, wantErr: "hostname"},
		{name: "log level", cfg: Config{LogLevel: "loud"}, wantErr: "log level"},
		{name: "relative shell", cfg: Config{Shell: "sh"}, wantErr: "shell"},
		{name: "relative init", cfg: Config{Init: &Init{Path: "init"}}, wantErr: "init"},
		{name: "init env", cfg: Config{Init: &Init{Path: "/sbin/init", Env: []string{"NOEQ"}}}, wantErr: "init env"},
		{name: "label key", cfg: Config{Labels: map[string]string{"a=b": "c"}}, wantErr: "label key"},
		{name: "label control", cfg: Config{Labels: map[string]string{"a": "x\x1b[2J"}}, wantErr: "label a"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.validateGuestOptions()
			if tc.wantErr == "" {
				if err != nil {
					t.Errorf("validateGuestOptions() = %v; want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("validateGuestOptions() = %v; want error containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestGuestEnvOptions(t *testing.T) {
	cfg := Config{Hostname: "box", LogLevel: "debug", Init: &Init{Path: "auto", Args: []string{"-v"}},
		Rlimits: []Rlimit{{"nofile", 256, 512}, {"core", agentproto.RlimitUnlimited, agentproto.RlimitUnlimited}}}
	env := guestEnv("sb-name", cfg)
	for _, want := range []string{"MSB_HOSTNAME=box", "MSB_LOG_LEVEL=debug", "MSB_RLIMITS=nofile=256:512;core=unlimited:unlimited",
		`MSB_INIT={"path":"auto","args":["-v"]}`} {
		if !slices.Contains(env, want) {
			t.Errorf("guestEnv = %q; want it to hold %q", env, want)
		}
	}
	if env := guestEnv("sb-name", Config{}); !slices.Contains(env, "MSB_HOSTNAME=sb-name") {
		t.Errorf("guestEnv without hostname = %q; want MSB_HOSTNAME=sb-name", env)
	}
}

func TestMergeImageConfigEntrypoint(t *testing.T) {
	img := &image.Image{}
	img.Config.Entrypoint = []string{"/docker-entrypoint.sh"}
	img.Config.Cmd = []string{"nginx", "-g", "daemon off;"}
	tests := []struct {
		name       string
		entrypoint []string
		want       []string
	}{
		{"image's", nil, []string{"/docker-entrypoint.sh", "nginx", "-g", "daemon off;"}},
		// Docker: --entrypoint drops the image's CMD too.
		{"replaced", []string{"/bin/sh", "-c", "echo hi"}, []string{"/bin/sh", "-c", "echo hi"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{Entrypoint: tc.entrypoint}
			mergeImageConfig(&cfg, img)
			if !slices.Equal(cfg.Command, tc.want) {
				t.Errorf("Command = %q; want %q", cfg.Command, tc.want)
			}
		})
	}
}
