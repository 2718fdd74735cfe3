package node

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hasidecar/hasidecar/fsm"
)

// toStatus maps an error to a gRPC status: FSM rejections keep their code in
// the message so that the caller can rebuild them (fromStatus).
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	var fe *fsm.Error
	switch {
	case errors.As(err, &fe):
		return status.Error(codes.FailedPrecondition, fe.Error())
	case errors.Is(err, errNoLeader):
		return status.Error(codes.Unavailable, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	}
	var ue *userError
	if errors.As(err, &ue) {
		return status.Error(ue.code, ue.msg)
	}
	return status.Error(codes.Internal, err.Error())
}

// fromStatus turns a gRPC error from a peer back into an *fsm.Error when it
// carries one.
func fromStatus(err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	if st.Code() == codes.FailedPrecondition {
		if fe, ok := fsm.ParseError(st.Message()); ok {
			return fe
		}
	}
	return err
}

// userError is a refusal with a message meant for the operator.
type userError struct {
	code codes.Code
	msg  string
}

func (e *userError) Error() string { return e.msg }

func refuse(format string, args ...any) error {
	return &userError{code: codes.FailedPrecondition, msg: fmt.Sprintf(format, args...)}
}

func invalid(format string, args ...any) error {
	return &userError{code: codes.InvalidArgument, msg: fmt.Sprintf(format, args...)}
}

func notFound(format string, args ...any) error {
	return &userError{code: codes.NotFound, msg: fmt.Sprintf(format, args...)}
}

var errNoLeader = errors.New("no raft leader: the cluster has no quorum right now")

// retryable reports whether a failed peer call may succeed on another try.
func retryable(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Aborted:
		return true
	}
	return false
}

const peerTimeout = 3 * time.Second
