package attach

// detector finds a detach sequence in the user's keystrokes. Bytes that
// may begin the sequence are held back until they either complete it
// (detach: they are never sent) or stop matching (they are sent, in
// order, as typed).
type detector struct {
	keys []byte
	// held is the matched prefix of keys, not yet forwarded.
	held []byte
}

// feed consumes p and returns the bytes to forward, and whether the
// sequence completed (bytes after it in p are dropped: the user has
// detached).
func (d *detector) feed(p []byte) (out []byte, detached bool) {
	if len(d.keys) == 0 {
		return p, false
	}
	for _, b := range p {
		out, detached = d.push(out, b)
		if detached {
			return out, true
		}
	}
	return out, false
}

// push handles one byte, appending whatever becomes forwardable to out.
func (d *detector) push(out []byte, b byte) ([]byte, bool) {
	if b == d.keys[len(d.held)] {
		d.held = append(d.held, b)
		if len(d.held) == len(d.keys) {
			d.held = d.held[:0]
			return out, true
		}
		return out, false
	}
	if len(d.held) == 0 {
		return append(out, b), false
	}
	// The held prefix broke off. Its first byte cannot start the match
	// any more; the rest, and b, may (as with "a,a,b" typed "a a a b"),
	// so they are fed again. The prefix is shorter each time, so this
	// ends.
	rest := append(append([]byte(nil), d.held[1:]...), b)
	out = append(out, d.held[0])
	d.held = d.held[:0]
	for _, c := range rest {
		var det bool
		if out, det = d.push(out, c); det {
			return out, true
		}
	}
	return out, false
}

// pending returns the held bytes (forwarded when the input ends: the user
// typed them).
func (d *detector) pending() []byte {
	p := d.held
	d.held = nil
	return p
}
