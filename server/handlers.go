package server

import (
	"bytes"
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/common/expfmt"

	"github.com/hangar-vm/hangar/api"
	"github.com/hangar-vm/hangar/compression"
)

// handlers implements the generated strict server interface over the
// Server. Each method validates everything it was given before it looks
// anything up, and changes no state before every check has passed.
type handlers struct{ s *Server }

var _ api.StrictServerInterface = (*handlers)(nil)

func (h *handlers) GetHealth(context.Context, api.GetHealthRequestObject) (api.GetHealthResponseObject, error) {
	out := api.GetHealth200JSONResponse{Status: api.HealthStatusOk}
	if h.s.version != "" {
		v := h.s.version
		out.Version = &v
	}
	return out, nil
}

func (h *handlers) GetMetrics(context.Context, api.GetMetricsRequestObject) (api.GetMetricsResponseObject, error) {
	families, err := h.s.promReg.Gather()
	if err != nil {
		return nil, fmt.Errorf("gather metrics: %w", err)
	}
	var b bytes.Buffer
	enc := expfmt.NewEncoder(&b, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, f := range families {
		if err := enc.Encode(f); err != nil {
			return nil, fmt.Errorf("encode metrics: %w", err)
		}
	}
	return api.GetMetrics200TextResponse(b.String()), nil
}

func (h *handlers) GetOpenAPI(context.Context, api.GetOpenAPIRequestObject) (api.GetOpenAPIResponseObject, error) {
	y := api.OpenAPIYAML()
	return api.GetOpenAPI200ApplicationyamlResponse{Body: strings.NewReader(y), ContentLength: int64(len(y))}, nil
}

func (h *handlers) ListHosts(context.Context, api.ListHostsRequestObject) (api.ListHostsResponseObject, error) {
	s := h.s
	s.mu.Lock()
	defer s.mu.Unlock()
	out := api.ListHosts200JSONResponse{Items: []api.Host{}}
	for _, he := range s.hostsSortedLocked() {
		out.Items = append(out.Items, s.hostViewLocked(he))
	}
	return out, nil
}

// policyFromAPI turns a wire compression object into a policy (nil stays
// nil).
func policyFromAPI(c *api.Compression) *compression.Policy {
	if c == nil {
		return nil
	}
	p := &compression.Policy{Enabled: c.Enabled, Level: c.Level}
	if c.Algorithm != nil {
		p.Algorithm = *c.Algorithm
	}
	return p
}

// compressionInput is policyFromAPI for a body field, refusing an explicit
// empty algorithm ("algorithm": "" would otherwise read as not set) with
// code, the error code of the field's level of precedence.
func compressionInput(c *api.Compression, code api.ErrorCode, field string) (*compression.Policy, error) {
	if c != nil && c.Algorithm != nil && *c.Algorithm == "" {
		fields := []api.FieldError{{Field: field + ".algorithm", Message: "empty (want zstd, lz4 or none, or omit the field)"}}
		e := api.NewError(code, "%s.algorithm: empty (want zstd, lz4 or none, or omit the field)", field)
		e.Fields = &fields
		return nil, e
	}
	return policyFromAPI(c), nil
}

func policyToAPI(p *compression.Policy) *api.Compression {
	if p == nil {
		return nil
	}
	c := &api.Compression{Enabled: p.Enabled, Level: p.Level}
	if p.Algorithm != "" {
		a := p.Algorithm
		c.Algorithm = &a
	}
	return c
}

func applied(st compression.Setting) api.AppliedCompression {
	return api.AppliedCompression{Algorithm: api.Algorithm(st.Algorithm), Level: st.Level}
}

// fieldProblems collects the problems of one request body.
type fieldProblems []api.FieldError

func (p *fieldProblems) add(field string, err error) {
	if err == nil {
		return
	}
	msg := err.Error()
	if e, ok := err.(*api.Error); ok {
		msg = e.Message
	}
	*p = append(*p, api.FieldError{Field: field, Message: msg})
}

func (p *fieldProblems) addf(field, format string, args ...any) {
	*p = append(*p, api.FieldError{Field: field, Message: fmt.Sprintf(format, args...)})
}

func (p fieldProblems) err() error { return fieldsError(p) }

func validateOptionalID(p *fieldProblems, field, kind string, id *string) {
	if id != nil {
		p.add(field, api.ValidateID(kind, *id))
	}
}

// newestFirst orders a listing by key, the creation time and id of an item:
// newest first, ties by id, so two listings of the same records agree.
func newestFirst[T any](items []T, key func(T) (created time.Time, id string)) {
	sort.Slice(items, func(i, j int) bool {
		at, aid := key(items[i])
		bt, bid := key(items[j])
		if !at.Equal(bt) {
			return at.After(bt)
		}
		return aid < bid
	})
}
