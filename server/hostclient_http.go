package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/hashicorp/go-retryablehttp"

	"github.com/hangar-vm/hangar/api"
	hostapi "github.com/hangar-vm/hangar/api/host"
)

// HTTPHostClient is the HostClient of a host daemon reached over its HTTP
// API with the generated hostapi client, authenticated with the cluster
// token. Idempotent calls (all of the host API's, see HostClient) are
// retried by go-retryablehttp after transport failures and gateway errors;
// an answer of the host itself ({code, message}) is never retried.
type HTTPHostClient struct {
	id string
	c  *hostapi.ClientWithResponses
}

var _ HostClient = (*HTTPHostClient)(nil)

// HTTPHostClientOptions tune an HTTPHostClient.
type HTTPHostClientOptions struct {
	// Token is the cluster token.
	Token Secret
	// Timeout bounds one call, retries included.
	Timeout time.Duration
	// Retries is how many times an idempotent call is retried.
	Retries int
	// Logger receives retry logs.
	Logger *slog.Logger
}

// idempotentKey marks a context whose request may be retried.
type idempotentKey struct{}

// idempotent returns ctx marked so that the request built with it may be
// retried. Only the methods whose host operation is idempotent use it.
func idempotent(ctx context.Context) context.Context {
	return context.WithValue(ctx, idempotentKey{}, true)
}

// checkRetry is the one place that decides whether a host call is retried:
// never once ctx is done, never a call that is not marked idempotent, never
// an answer that carries the host's own decision; a transport error, a 502
// or a 504 (a proxy in between), or a 503 without our error body are.
func checkRetry(ctx context.Context, resp *http.Response, err error) (bool, error) {
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	if v, _ := ctx.Value(idempotentKey{}).(bool); !v {
		return false, err
	}
	if err != nil {
		return true, err
	}
	switch resp.StatusCode {
	case http.StatusBadGateway, http.StatusGatewayTimeout:
		return true, nil
	case http.StatusServiceUnavailable:
		// The host's own 503 (no_capacity, shutting down) is JSON and
		// final for this call: the server places elsewhere instead.
		return !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json"), nil
	}
	return false, nil
}

// NewHTTPHostClient returns the client of host id at address (a base URL
// such as http://127.0.0.1:7081).
func NewHTTPHostClient(id, address string, o HTTPHostClientOptions) (*HTTPHostClient, error) {
	rc := retryablehttp.NewClient()
	rc.RetryMax = o.Retries
	rc.RetryWaitMin = 100 * time.Millisecond
	rc.RetryWaitMax = 2 * time.Second
	rc.CheckRetry = checkRetry
	// Hand the last response back unchanged when retries run out, so its
	// body still says what happened.
	rc.ErrorHandler = retryablehttp.PassthroughErrorHandler
	if o.Logger != nil {
		rc.Logger = o.Logger.With("component", "hostclient", "host", id)
	} else {
		rc.Logger = nil
	}
	hc := rc.StandardClient()
	hc.Timeout = o.Timeout
	c, err := hostapi.NewClientWithResponses(address,
		hostapi.WithHTTPClient(hc),
		hostapi.WithRequestEditorFn(hostapi.RequestEditorFn(api.BearerAuth(o.Token.Reveal()))))
	if err != nil {
		return nil, fmt.Errorf("host %s client at %q: %w", id, address, err)
	}
	return &HTTPHostClient{id: id, c: c}, nil
}

// HTTPDialer returns a HostDialer of HTTPHostClients with o.
func HTTPDialer(o HTTPHostClientOptions) HostDialer {
	return func(id, address string) (HostClient, error) { return NewHTTPHostClient(id, address, o) }
}

// result turns a generated response into an error: nil for want, the
// host's error (errors.Is works on it) otherwise, wrapped with what was
// asked.
func (h *HTTPHostClient) result(op string, err error, status int, body []byte, want ...int) error {
	if err != nil {
		return fmt.Errorf("host %s: %s: %w", h.id, op, err)
	}
	for _, w := range want {
		if status == w {
			return nil
		}
	}
	if status < 400 {
		return fmt.Errorf("host %s: %s: unexpected status %d", h.id, op, status)
	}
	return fmt.Errorf("host %s: %s: %w", h.id, op, api.FromResponse(status, body))
}

// errNoBody is a 2xx answer without the JSON body the spec promises.
var errNoBody = errors.New("answer without a JSON body")

// Statuses a call accepts: 200 only, or 201 for a creation and 200 for a
// retried one (the ids are the idempotency keys).
var (
	ok200       = []int{200}
	okCreated   = []int{200, 201}
	okNoContent = []int{204}
)

// answer is a generated response's value: the host's error for a status
// outside ok (result), else the first of bodies that was decoded, else
// errNoBody. Callers handle the transport error first: a response is nil
// when there is one.
func answer[T any](h *HTTPHostClient, op string, status int, raw []byte, ok []int, bodies ...*T) (T, error) {
	var zero T
	if err := h.result(op, nil, status, raw, ok...); err != nil {
		return zero, err
	}
	for _, b := range bodies {
		if b != nil {
			return *b, nil
		}
	}
	return zero, h.result(op, errNoBody, 0, nil)
}

func (h *HTTPHostClient) CreateInstance(ctx context.Context, id string, spec hostapi.InstanceSpec) (api.Instance, error) {
	op := "create instance " + id
	r, err := h.c.CreateHostInstanceWithResponse(idempotent(ctx), id, spec)
	if err != nil {
		return api.Instance{}, h.result(op, err, 0, nil)
	}
	return answer(h, op, r.StatusCode(), r.Body, okCreated, r.JSON201, r.JSON200)
}

func (h *HTTPHostClient) GetInstance(ctx context.Context, id string) (api.Instance, error) {
	op := "get instance " + id
	r, err := h.c.GetHostInstanceWithResponse(idempotent(ctx), id)
	if err != nil {
		return api.Instance{}, h.result(op, err, 0, nil)
	}
	return answer(h, op, r.StatusCode(), r.Body, ok200, r.JSON200)
}

func (h *HTTPHostClient) ListInstances(ctx context.Context) ([]api.Instance, error) {
	op := "list instances"
	r, err := h.c.ListHostInstancesWithResponse(idempotent(ctx))
	if err != nil {
		return nil, h.result(op, err, 0, nil)
	}
	l, err := answer(h, op, r.StatusCode(), r.Body, ok200, r.JSON200)
	return l.Items, err
}

func (h *HTTPHostClient) DeleteInstance(ctx context.Context, id string) error {
	op := "delete instance " + id
	r, err := h.c.DeleteHostInstanceWithResponse(idempotent(ctx), id)
	if err != nil {
		return h.result(op, err, 0, nil)
	}
	return h.result(op, nil, r.StatusCode(), r.Body, okNoContent...)
}

func (h *HTTPHostClient) Standby(ctx context.Context, id string, req hostapi.StandbyRequest) (hostapi.StandbyResponse, error) {
	op := "standby instance " + id
	r, err := h.c.StandbyHostInstanceWithResponse(idempotent(ctx), id, req)
	if err != nil {
		return hostapi.StandbyResponse{}, h.result(op, err, 0, nil)
	}
	return answer(h, op, r.StatusCode(), r.Body, ok200, r.JSON200)
}

func (h *HTTPHostClient) Restore(ctx context.Context, id string, req hostapi.RestoreRequest) (api.Instance, error) {
	op := "restore instance " + id
	r, err := h.c.RestoreHostInstanceWithResponse(idempotent(ctx), id, req)
	if err != nil {
		return api.Instance{}, h.result(op, err, 0, nil)
	}
	return answer(h, op, r.StatusCode(), r.Body, ok200, r.JSON200)
}

func (h *HTTPHostClient) CreateSnapshot(ctx context.Context, id string, req hostapi.SnapshotRequest) (api.Snapshot, error) {
	op := "snapshot instance " + id
	r, err := h.c.CreateHostSnapshotWithResponse(idempotent(ctx), id, req)
	if err != nil {
		return api.Snapshot{}, h.result(op, err, 0, nil)
	}
	return answer(h, op, r.StatusCode(), r.Body, okCreated, r.JSON201, r.JSON200)
}

func (h *HTTPHostClient) GetSnapshot(ctx context.Context, id string) (api.Snapshot, error) {
	op := "get snapshot " + id
	r, err := h.c.GetHostSnapshotWithResponse(idempotent(ctx), id)
	if err != nil {
		return api.Snapshot{}, h.result(op, err, 0, nil)
	}
	return answer(h, op, r.StatusCode(), r.Body, ok200, r.JSON200)
}

func (h *HTTPHostClient) ListSnapshots(ctx context.Context) ([]api.Snapshot, error) {
	op := "list snapshots"
	r, err := h.c.ListHostSnapshotsWithResponse(idempotent(ctx))
	if err != nil {
		return nil, h.result(op, err, 0, nil)
	}
	l, err := answer(h, op, r.StatusCode(), r.Body, ok200, r.JSON200)
	return l.Items, err
}

func (h *HTTPHostClient) DeleteSnapshot(ctx context.Context, id string) error {
	op := "delete snapshot " + id
	r, err := h.c.DeleteHostSnapshotWithResponse(idempotent(ctx), id)
	if err != nil {
		return h.result(op, err, 0, nil)
	}
	return h.result(op, nil, r.StatusCode(), r.Body, okNoContent...)
}

func (h *HTTPHostClient) Fork(ctx context.Context, id string, req hostapi.ForkRequest) (api.Instance, error) {
	op := "fork snapshot " + id
	r, err := h.c.ForkHostSnapshotWithResponse(idempotent(ctx), id, req)
	if err != nil {
		return api.Instance{}, h.result(op, err, 0, nil)
	}
	return answer(h, op, r.StatusCode(), r.Body, okCreated, r.JSON201, r.JSON200)
}

func (h *HTTPHostClient) Jobs(ctx context.Context) ([]api.Job, error) {
	op := "list jobs"
	r, err := h.c.ListHostJobsWithResponse(idempotent(ctx))
	if err != nil {
		return nil, h.result(op, err, 0, nil)
	}
	l, err := answer(h, op, r.StatusCode(), r.Body, ok200, r.JSON200)
	return l.Items, err
}
