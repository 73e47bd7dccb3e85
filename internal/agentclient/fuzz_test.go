package agentclient

import (
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/msb-go/msb/internal/agentproto"
)

// agentStream concatenates frames as an agent would send them.
func agentStream(tb testing.TB, msgs ...agentproto.Message) []byte {
	tb.Helper()
	var b []byte
	for _, m := range msgs {
		f, err := m.Marshal()
		if err != nil {
			tb.Fatal(err)
		}
		b = append(b, f...)
	}
	return b
}

func msg(tb testing.TB, id uint32, t agentproto.Type, p any) agentproto.Message {
	tb.Helper()
	m, err := agentproto.New(id, t, p)
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

// FuzzClientStream feeds hostile agent output to a client with one exec
// session (id 1) and one pending stat (id 2). Whatever the bytes, the
// client must not panic, every call must return once the stream ends, and
// no goroutine may outlive Close.
func FuzzClientStream(f *testing.F) {
	f.Add(agentStream(f,
		msg(f, 1, agentproto.TypeExecStarted, agentproto.ExecStarted{PID: 7}),
		msg(f, 1, agentproto.TypeExecStdout, agentproto.ExecData{Data: []byte("out")}),
		msg(f, 1, agentproto.TypeExecStderr, agentproto.ExecData{Data: []byte("err")}),
		msg(f, 2, agentproto.TypeFsResponse, agentproto.FsResponse{OK: true, Data: &agentproto.FsResultData{Stat: &agentproto.FsEntry{Path: "/"}}}),
		msg(f, 1, agentproto.TypeExecExited, agentproto.ExecExited{Code: 0}),
	))
	f.Add(agentStream(f, msg(f, 1, agentproto.TypeExecFailed, agentproto.ExecFailed{Kind: "other"})))
	f.Add(agentStream(f,
		msg(f, 1, agentproto.TypeExecStarted, agentproto.ExecStarted{PID: 7}),
		msg(f, 2, agentproto.TypeFsResponse, agentproto.FsResponse{OK: true}),
		msg(f, 1, agentproto.TypeFsResponse, agentproto.FsResponse{}),
	))
	f.Add(agentStream(f,
		msg(f, 1, agentproto.TypeExecStarted, nil),
		agentproto.Message{ID: 1, Type: agentproto.TypeExecStdout, Payload: []byte{0xff}},
		agentproto.Message{ID: 2, Type: agentproto.TypeFsResponse, Payload: []byte{0x01}},
	))
	f.Add([]byte{0, 0, 0, 0})
	// Header flags that contradict the type: a TERMINAL stdout frame must
	// not end (or orphan) the session, and an exited frame without the
	// flag must still end it.
	lying := agentStream(f,
		msg(f, 1, agentproto.TypeExecStarted, agentproto.ExecStarted{PID: 7}),
		msg(f, 1, agentproto.TypeExecStdout, agentproto.ExecData{Data: []byte("out")}),
	)
	lying[len(lying)-len(agentStream(f, msg(f, 1, agentproto.TypeExecStdout, agentproto.ExecData{Data: []byte("out")})))+8] = byte(agentproto.FlagTerminal)
	f.Add(lying)
	unflagged := agentStream(f,
		msg(f, 1, agentproto.TypeExecStarted, agentproto.ExecStarted{PID: 7}),
		msg(f, 1, agentproto.TypeExecExited, agentproto.ExecExited{Code: 4}),
	)
	unflagged[len(unflagged)-len(agentStream(f, msg(f, 1, agentproto.TypeExecExited, agentproto.ExecExited{Code: 4})))+8] = 0
	f.Add(unflagged)
	f.Fuzz(fuzzOne)
}

func fuzzOne(t *testing.T, data []byte) {
	{
		cc, ac := net.Pipe()
		var wg sync.WaitGroup
		wg.Go(func() {
			defer ac.Close()
			ready, err := msg(t, 0, agentproto.TypeReady, agentproto.Ready{}).Marshal()
			if err != nil {
				return
			}
			if _, err := ac.Write(ready); err != nil {
				return
			}
			// Wait for the exec and stat requests so that their ids are
			// registered before the hostile frames arrive.
			for range 2 {
				if _, err := agentproto.ReadRawFrame(ac); err != nil {
					return
				}
			}
			drained := make(chan struct{})
			go func() { io.Copy(io.Discard, ac); close(drained) }()
			ac.Write(data)
			ac.Close()
			<-drained
		})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := NewDirect(ctx, cc)
		if err != nil {
			t.Fatal(err)
		}
		statDone := make(chan struct{})
		var s *Session
		execDone := make(chan error, 1)
		go func() {
			var err error
			s, err = c.ExecStream(ctx, agentproto.ExecRequest{Cmd: "x"})
			execDone <- err
		}()
		// Register the stat only after the exec so the ids are 1, 2. The
		// agent sends nothing before both requests, so the exec cannot
		// end first.
		for {
			c.mu.Lock()
			n := len(c.subs)
			c.mu.Unlock()
			if n == 1 {
				break
			}
			time.Sleep(100 * time.Microsecond)
		}
		go func() {
			defer close(statDone)
			c.Stat(ctx, "/")
		}()
		if err := <-execDone; err == nil {
			var rw sync.WaitGroup
			rw.Go(func() { io.Copy(io.Discard, s.Stdout()) })
			rw.Go(func() { io.Copy(io.Discard, s.Stderr()) })
			s.Wait()
			rw.Wait()
		}
		<-statDone
		c.Close()
		wg.Wait()
		if ctx.Err() != nil {
			t.Fatalf("client calls did not return before the deadline")
		}
	}
}
