package agent

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"time"

	"golang.org/x/sys/unix"

	"github.com/msb-go/msb/internal/agentproto"
)

// Main is agentd's entry point. As PID 1 it initialises the VM and serves the
// agent port; it never returns and never exits: whatever happens, the VM is
// reset (see powerOff) so that it cannot hang with a dead init.
//
// Outside PID 1 (development) it skips the init and serves on stdin and
// stdout.
func Main() {
	runShimIfRequested()
	if os.Getpid() != 1 {
		// PID 1 does it once it has mounted /proc (runInit).
		go relaxSysmon()
	}
	runChildIfRequested()
	initTime := bootTime()
	// The level is raised or lowered once the configuration (MSB_LOG_LEVEL)
	// is read.
	logLevel.Set(slog.LevelWarn)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: &logLevel}))
	if os.Getpid() != 1 {
		cfg, err := LoadConfig(os.Environ(), BootEnvPath)
		if err != nil {
			fmt.Fprintf(os.Stderr, "agentd: config: %v\n", err)
			os.Exit(1)
		}
		logLevel.Set(slogLevel(cfg.LogLevel))
		err = Serve(context.Background(), stdio{}, ServeOptions{Env: cfg.Env, DefaultUser: cfg.User, Logger: log, InitTime: initTime})
		if err != nil {
			fmt.Fprintf(os.Stderr, "agentd: %v\n", err)
			os.Exit(1)
		}
		return
	}
	defer powerOff()
	defer func() {
		if r := recover(); r != nil {
			fmt.Fprintf(os.Stderr, "agentd: panic: %v\n", r)
		}
	}()
	// The kernel delivers to PID 1 only the signals it handles, and the Go
	// runtime handles all of them (default: exit). Catch the terminating
	// ones so a stray `kill 1` cannot kill init; caught signals revert to
	// the default in exec'd children, unlike ignored ones.
	sigc := make(chan os.Signal, 8)
	signal.Notify(sigc, unix.SIGTERM, unix.SIGINT, unix.SIGHUP, unix.SIGQUIT, unix.SIGUSR1, unix.SIGUSR2)
	go func() {
		for range sigc {
		}
	}()

	if err := pid1(initTime, log); err != nil {
		fmt.Fprintf(os.Stderr, "agentd: init failed: %v\n", err)
	}
}

// pid1 runs init, then serves the agent port until the host disconnects or
// shuts the VM down.
func pid1(initTime time.Duration, log *slog.Logger) error {
	cfg, err := LoadConfig(os.Environ(), BootEnvPath)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	logLevel.Set(slogLevel(cfg.LogLevel))
	var stages stageLog
	if err := runInit(&cfg, log, &stages); err != nil {
		return err
	}
	if cfg.Probe {
		fmt.Fprintln(os.Stdout, probeLine(bootTime(), "/sys/bus/virtio/devices"))
		return nil
	}
	if cfg.Init != nil {
		return handOff(&cfg, initTime, log)
	}
	port, err := openAgentPort()
	if err != nil {
		return err
	}
	stages.mark("agent port open")
	opts := ServeOptions{
		Env:           cfg.Env,
		DefaultUser:   cfg.User,
		HeartbeatPath: heartbeatFile,
		ClockPath:     hostClockFile,
		Shutdown:      powerOff,
		Logger:        log,
		InitTime:      initTime,
	}
	// With a vsock device the host may move the frame stream off the slow
	// console (agentproto.CapVsock); without one, the console it is.
	upgrades, stopVsock, err := startVsock(agentproto.AgentVsockPort, log)
	if err != nil {
		log.Debug("no vsock transport; serving on the console only", "err", err)
	} else {
		defer stopVsock()
		opts.Upgrades = upgrades
		stages.mark("vsock listening")
	}
	opts.InitStages = stages
	return Serve(context.Background(), port, opts)
}

// logLevel is agentd's log level (MSB_LOG_LEVEL).
var logLevel slog.LevelVar

// slogLevel maps an MSB_LOG_LEVEL name to a level; "" is warn.
func slogLevel(name string) slog.Level {
	switch name {
	case "error":
		return slog.LevelError
	case "info":
		return slog.LevelInfo
	case "debug":
		return slog.LevelDebug
	case "trace":
		return slog.LevelDebug - 4
	}
	return slog.LevelWarn
}

// stdio is stdin and stdout as one connection.
type stdio struct{}

func (stdio) Read(b []byte) (int, error)  { return os.Stdin.Read(b) }
func (stdio) Write(b []byte) (int, error) { return os.Stdout.Write(b) }
func (stdio) Close() error                { return os.Stdin.Close() }
