package supervisor_test

import (
	"context"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/msb-go/msb/internal/launch"
	"github.com/msb-go/msb/internal/relay"
	"github.com/msb-go/msb/internal/supervisor"
)

// Example wires the building blocks the way the sandbox process does: the
// relay on the agent stream, an idle/max-duration watcher fed by the relay's
// host-side activity, and the metrics sampler. agent is the host end of the
// guest's agent port and ln the bound runtime/agent.sock.
func Example() {
	var agent *os.File      // host end of the agent socketpair
	var ln net.Listener     // runtime/agent.sock
	var logger *slog.Logger // supervisor.log
	if agent == nil {
		return // this example only shows the wiring
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	execLog, err := launch.OpenExecLog("logs/exec.log", launch.DefaultMaxLogBytes)
	if err != nil {
		logger.Warn("exec log unavailable", "err", err)
	}
	relay := relay.NewRelay(agent, relay.RelayOptions{
		ExecLog:    execLog,
		Logger:     logger,
		OnShutdown: cancel,
	})
	defer relay.Close()

	readyCtx, readyCancel := context.WithTimeout(ctx, 60*time.Second)
	_, err = relay.WaitReady(readyCtx)
	readyCancel()
	if err != nil {
		_ = launch.WriteBootError("logs/boot-error.json", launch.NewBootError(err))
		return
	}
	go relay.Serve(ctx, ln)

	reasons := make(chan supervisor.Reason, 1)
	w := &supervisor.Watcher{IdleTimeout: 5 * time.Minute, Activity: relay, MaxDuration: time.Hour}
	go w.Run(ctx, reasons)

	s := &supervisor.Sampler{PIDs: func() []int { return []int{os.Getpid()} }}
	go s.Run(ctx, func(m supervisor.Sample) { logger.Debug("metrics", "cpu", m.CPUPercent, "rss", m.RSSBytes) })

	select {
	case reason := <-reasons:
		logger.Info("stopping", "reason", reason)
	case <-ctx.Done():
	}
	if execLog != nil {
		_ = execLog.Stopped()
		_ = execLog.Close()
	}
}
