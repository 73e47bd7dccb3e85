package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// With MSB_INIT a real init (systemd, tini, a script) becomes PID 1 and
// agentd serves from a child:
//
//	agentd (PID 1) ── runInit: mounts, root, network ──┐
//	    │ starts /proc/self/exe with childEnv            │
//	    ├──────────────► agentd child: subreaper, serves the agent port
//	    └─ execve(init) ► init is PID 1
//
// The child is started by re-executing agentd because a Go program cannot
// fork without exec. /proc/self/exe still names agentd after the root
// switch made the initramfs unreachable.

// childEnv carries the child's serve options (a childSpec as JSON). It is the
// child's only environment variable, so nothing of it leaks into commands:
// they get childSpec.Env.
const childEnv = "MSB_AGENT_CHILD"

type childSpec struct {
	Env      []string      `json:"env"`
	User     string        `json:"user,omitempty"`
	LogLevel string        `json:"log_level,omitempty"`
	InitTime time.Duration `json:"init_time"`
}

// Shutdown timing of the init: systemd powers off on SIGRTMIN+4; an init
// that ignores it gets SIGTERM, and the VM goes down regardless after that.
const (
	initPoweroffGrace = 5 * time.Second
	initTermGrace     = 2 * time.Second
)

// sigRTMin4 is SIGRTMIN+4 as systemd counts it: glibc's SIGRTMIN is 34
// (the kernel's 32 and 33 are reserved for the C library's threads).
const sigRTMin4 = syscall.Signal(34 + 4)

// resolveInit finds the init binary of spec in the (already switched) root.
func resolveInit(spec *InitSpec) (string, error) {
	cands := []string{spec.Path}
	if spec.Path == "auto" {
		cands = InitCandidates
	}
	for _, p := range cands {
		st, err := os.Stat(p)
		if err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0 {
			return p, nil
		}
		if spec.Path != "auto" {
			if err == nil {
				err = errors.New("not an executable file")
			}
			return "", fmt.Errorf("init %s: %w", p, err)
		}
	}
	return "", fmt.Errorf("init auto: none of %v in the root is an executable file", InitCandidates)
}

// handOff starts the serving child and then executes the init in place of
// PID 1. It returns only if it could not start the child; once the child
// runs, a failed execve leaves PID 1 reaping orphans forever, so the child
// keeps serving.
func handOff(cfg *Config, initTime time.Duration, log *slog.Logger) error {
	initPath, err := resolveInit(cfg.Init)
	if err != nil {
		return err
	}
	spec, err := json.Marshal(childSpec{Env: cfg.Env, User: cfg.User, LogLevel: cfg.LogLevel, InitTime: initTime})
	if err != nil {
		return err
	}
	child := exec.Command("/proc/self/exe")
	child.Args = []string{"agentd"}
	child.Env = []string{childEnv + "=" + string(spec)}
	child.Stdout, child.Stderr = os.Stderr, os.Stderr
	if _, err := withDefaultSlack(func() (struct{}, error) { return struct{}{}, child.Start() }); err != nil {
		return fmt.Errorf("start serving agentd: %w", err)
	}
	log.Info("init: handing PID 1 over", "init", initPath, "agent_pid", child.Process.Pid)
	argv := append([]string{initPath}, cfg.Init.Args...)
	env := MergeEnv(cfg.Env, cfg.Init.Env)
	_, err = withDefaultSlack(func() (struct{}, error) { return struct{}{}, syscall.Exec(initPath, argv, env) })
	fmt.Fprintf(os.Stderr, "agentd: exec init %s: %v; PID 1 stays agentd and only reaps\n", initPath, err)
	for {
		var ws unix.WaitStatus
		if _, err := unix.Wait4(-1, &ws, 0, nil); errors.Is(err, unix.ECHILD) {
			time.Sleep(time.Second)
		}
	}
}

// runChildIfRequested is the serving child of handOff: it never returns.
func runChildIfRequested() {
	v, ok := os.LookupEnv(childEnv)
	if !ok {
		return
	}
	os.Unsetenv(childEnv)
	var spec childSpec
	if err := json.Unmarshal([]byte(v), &spec); err != nil {
		fmt.Fprintf(os.Stderr, "agentd: child spec: %v\n", err)
		stopInit()
	}
	logLevel.Set(slogLevel(spec.LogLevel))
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: &logLevel}))
	// Orphans of commands come to the agent, which reaps them, and not to
	// the init, which may not expect them.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		log.Warn("init: child subreaper", "err", err)
	}
	port, err := openAgentPort()
	if err != nil {
		fmt.Fprintf(os.Stderr, "agentd: %v\n", err)
		stopInit()
	}
	err = Serve(context.Background(), port, ServeOptions{
		Env:           spec.Env,
		DefaultUser:   spec.User,
		HeartbeatPath: heartbeatFile,
		ClockPath:     hostClockFile,
		Shutdown:      stopInit,
		Logger:        log,
		InitTime:      spec.InitTime,
		reapOrphans:   true,
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "agentd: %v\n", err)
	}
	stopInit()
}

// stopInit asks the init to power off (SIGRTMIN+4), then to terminate
// (SIGTERM), then ends the VM itself. It never returns.
func stopInit() {
	unix.Sync()
	_ = unix.Kill(1, sigRTMin4)
	time.Sleep(initPoweroffGrace)
	_ = unix.Kill(1, unix.SIGTERM)
	time.Sleep(initTermGrace)
	powerOff()
}
