package agent

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/msb-go/msb/internal/agentproto"
)

func TestServeContextCancel(t *testing.T) {
	hostConn, guestConn := socketpair(t)
	defer hostConn.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, guestConn, ServeOptions{Env: []string{"PATH=" + os.Getenv("PATH")}})
	}()
	dec := agentproto.NewDecoder(hostConn)
	if _, err := dec.Decode(); err != nil {
		t.Fatal(err)
	}
	enc := agentproto.NewEncoder(hostConn)
	m, _ := agentproto.New(1, agentproto.TypeExecRequest, agentproto.ExecRequest{Cmd: "sleep", Args: []string{"100"}})
	enc.Encode(m)
	// Fill the session's stdin queue past its bound, so the console reader
	// is parked in push when the context is cancelled.
	big, _ := agentproto.New(1, agentproto.TypeExecStdin, agentproto.ExecData{Data: make([]byte, 3<<20)})
	go func() {
		for range 4 {
			if enc.Encode(big) != nil {
				return
			}
		}
	}()
	var pid int
	for pid == 0 {
		m, err := dec.Decode()
		if err != nil {
			t.Fatal(err)
		}
		if m.Type == agentproto.TypeExecStarted {
			var s agentproto.ExecStarted
			mustDecode(t, m, &s)
			pid = int(s.PID)
		}
	}
	go func() {
		for {
			if _, err := dec.Decode(); err != nil {
				return
			}
		}
	}()
	time.Sleep(200 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Serve = %v; want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
	if !pidGone(pid) {
		t.Errorf("session pid %d survived the cancel", pid)
	}
}

func TestServeBadFrames(t *testing.T) {
	t.Run("undecodable frame is skipped", func(t *testing.T) {
		c := startServe(t, ServeOptions{Env: []string{"PATH=" + os.Getenv("PATH")}})
		// A well-framed body that is not a CBOR envelope.
		frame := binary.BigEndian.AppendUint32(nil, 5+3)
		frame = binary.BigEndian.AppendUint32(frame, 9)
		frame = append(frame, 0, 0xff, 0xff, 0xff)
		if _, err := c.conn.Write(frame); err != nil {
			t.Fatal(err)
		}
		r := c.exec(agentproto.ExecRequest{Cmd: "echo", Args: []string{"still here"}})
		if string(r.stdout) != "still here\n" {
			t.Errorf("after a bad frame: got %v", r)
		}
	})
	t.Run("oversized length is fatal", func(t *testing.T) {
		hostConn, guestConn := socketpair(t)
		defer hostConn.Close()
		done := make(chan error, 1)
		go func() { done <- Serve(context.Background(), guestConn, ServeOptions{}) }()
		if _, err := agentproto.NewDecoder(hostConn).Decode(); err != nil {
			t.Fatal(err)
		}
		hostConn.Write(binary.BigEndian.AppendUint32(nil, agentproto.MaxFrameLen+1))
		select {
		case err := <-done:
			if !errors.Is(err, agentproto.ErrFrameTooLarge) || !strings.HasPrefix(err.Error(), "read frame: ") {
				t.Errorf("Serve = %v; want read frame: …too large", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Serve did not return")
		}
	})
	t.Run("bad exec request", func(t *testing.T) {
		c := startServe(t, ServeOptions{})
		_, ch := c.start(agentproto.TypeExecRequest, map[string]any{"cmd": 5})
		r := collect(t, ch, 10*time.Second)
		if r.failed == nil || r.failed.Kind != agentproto.FailOther || !strings.HasPrefix(r.failed.Message, "bad exec request: ") {
			t.Errorf("got %v; want failed other \"bad exec request: …\"", r)
		}
	})
}

// TestServeHostReset closes the host end while agentd's core.ready sits
// unread in it: the kernel then reports ECONNRESET to agentd's read, which
// is a host that went away (as EOF), not an agent error.
func TestServeHostReset(t *testing.T) {
	hostConn, guestConn := socketpair(t)
	done := make(chan error, 1)
	go func() {
		done <- Serve(context.Background(), guestConn, ServeOptions{HeartbeatPath: t.TempDir() + "/hb.json"})
	}()
	// Wait until core.ready is queued on the host end without reading it.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var n int
		rc, err := hostConn.(*net.UnixConn).SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		_ = rc.Control(func(fd uintptr) { n, _ = unix.IoctlGetInt(int(fd), unix.SIOCINQ) })
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("core.ready never arrived")
		}
		time.Sleep(time.Millisecond)
	}
	hostConn.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve = %v; want nil (host reset is a disconnect)", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after the host reset")
	}
}
