package netpolicy

import "errors"

// ErrInvalid is wrapped by every error about a malformed rule, preset, flag
// or Config, so callers can tell bad user input from other failures.
var ErrInvalid = errors.New("invalid network policy")

// inputError is a malformed input: what was given, what is wrong with it and,
// when there is one, a hint at what was probably meant.
type inputError struct {
	input string // e.g. `net rule "alow@public"`
	msg   string // lowercase, names the offending token
	hint  string // e.g. `did you mean "allow"?`; may be empty
}

func (e *inputError) Error() string {
	s := e.input + ": " + e.msg
	if e.hint != "" {
		s += "; " + e.hint
	}
	return s
}

func (e *inputError) Unwrap() error { return ErrInvalid }
