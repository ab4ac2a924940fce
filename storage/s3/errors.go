package s3

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/minio/minio-go/v7"

	"github.com/hangar-vm/hangar/storage"
)

// translateError is the one place where minio-go errors become storage
// sentinels, so that wrappers and callers can use errors.Is. The SDK error is
// kept in the message. A cancelled or expired ctx always shows through, even
// when the SDK reported the failure some other way.
func translateError(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("%w: %v", ctxErr, err)
	}
	resp := minio.ToErrorResponse(err)
	switch {
	case resp.Code == "NoSuchKey" || resp.Code == "NotFound":
		return fmt.Errorf("%w: %v", storage.ErrNotFound, err)
	case resp.Code == "PreconditionFailed" || resp.StatusCode == http.StatusPreconditionFailed:
		// Only Create sends a precondition (If-None-Match: *).
		return fmt.Errorf("%w: %v", storage.ErrAlreadyExists, err)
	}
	return err
}
