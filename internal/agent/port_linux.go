package agent

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

const (
	agentPortName = "agent"
	portWait      = 5 * time.Second
	portPoll      = 20 * time.Millisecond
	// portRetry is the pause between attempts while the host side of the
	// port is not connected.
	portRetry = 50 * time.Millisecond
)

// findAgentPort returns the /dev path of the virtio-console port named
// "agent", waiting up to portWait for it to appear.
func findAgentPort(sysPorts string) (string, error) {
	deadline := time.Now().Add(portWait)
	for {
		names, _ := filepath.Glob(filepath.Join(sysPorts, "*", "name"))
		for _, n := range names {
			data, err := os.ReadFile(n)
			if err == nil && strings.TrimSpace(string(data)) == agentPortName {
				return "/dev/" + filepath.Base(filepath.Dir(n)), nil
			}
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("%w after %v", ErrNoAgentPort, portWait)
		}
		time.Sleep(portPoll)
	}
}

// consolePort is the agent port. A virtio-console port reads as EOF and
// writes fail with EPIPE while the host side is not connected; for the
// agent that is a pause, not the end (the host owns the VM's lifetime and
// ends it with core.shutdown or by stopping the VM), so both are retried.
type consolePort struct {
	f *os.File
}

func openAgentPort() (*consolePort, error) {
	dev, err := findAgentPort("/sys/class/virtio-ports")
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(dev, os.O_RDWR, 0)
	if errors.Is(err, unix.ENXIO) {
		// virtio_console: a console port (QEMU virtconsole) belongs to
		// the hvc driver and cannot be opened as a vport.
		return nil, fmt.Errorf("open agent port %s: %w (a console port; the host must declare it as a plain serial port, e.g. QEMU virtserialport)", dev, err)
	}
	if err != nil {
		return nil, fmt.Errorf("open agent port: %w", err)
	}
	return &consolePort{f: f}, nil
}

func (p *consolePort) Read(b []byte) (int, error) {
	for {
		n, err := p.f.Read(b)
		if n == 0 && errors.Is(err, io.EOF) {
			time.Sleep(portRetry)
			continue
		}
		return n, err
	}
}

func (p *consolePort) Write(b []byte) (int, error) {
	written := 0
	for written < len(b) {
		n, err := p.f.Write(b[written:])
		written += n
		if errors.Is(err, unix.EPIPE) {
			time.Sleep(portRetry)
			continue
		}
		if err != nil {
			return written, err
		}
	}
	return written, nil
}

func (p *consolePort) Close() error { return p.f.Close() }
