package relay

// The tap: exec session output copied into exec.log as it passes.

import (
	"unicode/utf8"

	"github.com/msb-go/msb/internal/agentproto"
	"github.com/msb-go/msb/internal/launch"
)

// tap copies exec output (m, already decoded by route) into exec.log.
func (r *Relay) tap(s *relaySession, m agentproto.Message, terminal bool) {
	if terminal {
		for i := range s.carry {
			r.logExec(s, i, nil, true)
		}
		return
	}
	var stream int
	switch m.Type {
	case agentproto.TypeExecStdout:
		stream = 0
	case agentproto.TypeExecStderr:
		stream = 1
	default:
		return
	}
	data, err := m.Data()
	if err != nil {
		return
	}
	r.logExec(s, stream, data, false)
}

// logExec writes data (after any carried partial character) to exec.log,
// holding back a trailing incomplete UTF-8 sequence unless flush is set.
func (r *Relay) logExec(s *relaySession, stream int, data []byte, flush bool) {
	if len(s.carry[stream]) > 0 {
		data = append(s.carry[stream], data...)
		s.carry[stream] = nil
	}
	if !flush {
		var tail []byte
		data, tail = splitUTF8Tail(data)
		if len(tail) > 0 {
			s.carry[stream] = append([]byte(nil), tail...)
		}
	}
	if len(data) == 0 {
		return
	}
	src := launch.SourceStdout
	switch {
	case s.tty:
		src = launch.SourceOutput
	case stream == 1:
		src = launch.SourceStderr
	}
	if err := r.opts.ExecLog.Write(src, s.logID, data); err != nil {
		r.log.Debug("exec log", "err", err)
	}
}

// splitUTF8Tail splits off an incomplete (but so far valid-looking) UTF-8
// sequence at the end of b.
func splitUTF8Tail(b []byte) (complete, tail []byte) {
	for i := len(b) - 1; i >= 0 && i >= len(b)-utf8.UTFMax+1; i-- {
		c := b[i]
		if c < utf8.RuneSelf {
			return b, nil
		}
		if utf8.RuneStart(c) {
			if utf8.FullRune(b[i:]) {
				return b, nil
			}
			return b[:i], b[i:]
		}
	}
	return b, nil
}
