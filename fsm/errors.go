package fsm

import (
	"errors"
	"fmt"
	"strings"
)

// Code classifies why a command was rejected.
type Code string

// The rejection codes. They travel over gRPC as the prefix of the status
// message ("stale_term: ..."), see ParseError.
const (
	CodeStaleTerm         Code = "stale_term"
	CodeUnknownNode       Code = "unknown_node"
	CodeInvalidTransition Code = "invalid_transition"
	CodeClusterMismatch   Code = "cluster_mismatch"
	CodeInvalidCommand    Code = "invalid_command"
	CodeConflict          Code = "conflict"
)

var knownCodes = []Code{CodeStaleTerm, CodeUnknownNode, CodeInvalidTransition, CodeClusterMismatch, CodeInvalidCommand, CodeConflict}

// Error is a domain rejection of a command. The state is unchanged.
type Error struct {
	Code Code
	Msg  string
}

func (e *Error) Error() string { return string(e.Code) + ": " + e.Msg }

// Is makes errors.Is(err, &Error{Code: c}) match on the code alone.
func (e *Error) Is(target error) bool {
	var t *Error
	if errors.As(target, &t) {
		return t.Code == e.Code && (t.Msg == "" || t.Msg == e.Msg)
	}
	return false
}

// Sentinels for errors.Is.
var (
	ErrStaleTerm         = &Error{Code: CodeStaleTerm}
	ErrUnknownNode       = &Error{Code: CodeUnknownNode}
	ErrInvalidTransition = &Error{Code: CodeInvalidTransition}
	ErrClusterMismatch   = &Error{Code: CodeClusterMismatch}
	ErrInvalidCommand    = &Error{Code: CodeInvalidCommand}
	ErrConflict          = &Error{Code: CodeConflict}
)

func errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Msg: fmt.Sprintf(format, args...)}
}

// ParseError turns the text of an *Error (as carried in a gRPC status
// message) back into an *Error; ok is false when the text is not one.
func ParseError(s string) (*Error, bool) {
	for _, c := range knownCodes {
		if rest, found := strings.CutPrefix(s, string(c)+": "); found {
			return &Error{Code: c, Msg: rest}, true
		}
	}
	return nil, false
}
