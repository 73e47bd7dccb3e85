package sandbox

import (
	"os"
	"os/exec"
)

// Process is a sandbox process this process started. An attached one holds
// the write end of the watchdog pipe: when this process dies, or Release
// closes it, the sandbox process reads EOF on launch.WatchdogFD and stops
// (parent death). A detached one is released at once and outlives its
// parent.
type Process struct {
	Name string
	PID  int
	cmd  *exec.Cmd
	// watchdog is the write end of the attached sandbox's parent-death pipe.
	watchdog *os.File
	// exited is closed when cmd.Wait returned; waitErr is then its error.
	exited  chan struct{}
	waitErr error
}

// newProcess starts reaping cmd, which has started.
func newProcess(name string, cmd *exec.Cmd, watchdog *os.File) *Process {
	p := &Process{Name: name, PID: cmd.Process.Pid, cmd: cmd, watchdog: watchdog, exited: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	return p
}

// Wait blocks until the sandbox process exits.
func (p *Process) Wait() {
	if p.exited != nil {
		<-p.exited
	}
}

// Release closes this process's end of the watchdog pipe: an attached
// sandbox process sees its parent gone and stops; a detached one may
// outlive this process.
func (p *Process) Release() {
	if p.watchdog != nil {
		p.watchdog.Close()
		p.watchdog = nil
	}
}

// kill ends a sandbox process that did not get ready and reaps it.
func (p *Process) kill() {
	_ = p.cmd.Process.Kill()
	<-p.exited
	p.Release()
}
