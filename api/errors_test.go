package api_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/hangar-vm/hangar/api"
)

// TestErrorRoundTrip: a handler's error, turned into a response by ToError
// and StatusFor and read back by FromResponse, matches the same sentinel and
// no other, keeps its message and field problems, and has the documented
// status.
func TestErrorRoundTrip(t *testing.T) {
	wantStatus := map[api.ErrorCode]int{
		api.ErrorCodeInvalidRequest:             400,
		api.ErrorCodeInvalidSnapshotCompression: 400,
		api.ErrorCodeInvalidSnapshotPolicy:      400,
		api.ErrorCodeUnauthorized:               401,
		api.ErrorCodeNotFound:                   404,
		api.ErrorCodeInvalidState:               409,
		api.ErrorCodeConflict:                   409,
		api.ErrorCodeNoCapacity:                 503,
		api.ErrorCodeHostUnavailable:            503,
		api.ErrorCodeInternal:                   500,
	}
	if len(wantStatus) != len(api.Codes) {
		t.Fatalf("table has %d codes, api.Codes %d", len(wantStatus), len(api.Codes))
	}
	for _, code := range api.Codes {
		sentinel := api.Sentinel(code)
		if sentinel.Code != code {
			t.Fatalf("Sentinel(%s) has code %s", code, sentinel.Code)
		}
		cases := map[string]error{
			"sentinel": sentinel,
			"wrapped":  fmt.Errorf("instance i-1: %w", sentinel),
			"new":      api.NewError(code, "instance %s: nope", "i-1"),
			"deep":     fmt.Errorf("route: %w", fmt.Errorf("host h1: %w", api.NewError(code, "x"))),
		}
		for name, err := range cases {
			t.Run(string(code)+"/"+name, func(t *testing.T) {
				wire := api.ToError(err)
				if wire == sentinel {
					t.Fatal("ToError returned the sentinel itself")
				}
				status := wire.Status()
				if status != wantStatus[code] || api.StatusFor(code) != status {
					t.Fatalf("status %d, want %d", status, wantStatus[code])
				}
				body, jerr := json.Marshal(wire)
				if jerr != nil {
					t.Fatal(jerr)
				}
				got := api.FromResponse(status, body)
				if !errors.Is(got, sentinel) {
					t.Fatalf("errors.Is(%v, %s sentinel) = false", got, code)
				}
				for _, other := range api.Codes {
					if other != code && errors.Is(got, api.Sentinel(other)) {
						t.Errorf("also matches %s", other)
					}
				}
				if got.Error() != err.Error() {
					t.Errorf("message %q, want %q", got.Error(), err.Error())
				}
				if !strings.Contains(string(body), `"code":"`+string(code)+`"`) {
					t.Errorf("body %s lacks the code", body)
				}
			})
		}
	}
}

func TestErrorFieldsSurvive(t *testing.T) {
	fields := []api.FieldError{{Field: "compression.level", Message: "25 is out of range for zstd (1-19)"}}
	src := &api.Error{Code: api.ErrorCodeInvalidSnapshotCompression, Message: "bad", Fields: &fields}
	wire := api.ToError(fmt.Errorf("standby i-1: %w", src))
	fields[0].Field = "mutated"
	body, _ := json.Marshal(wire)
	var got *api.Error
	if !errors.As(api.FromResponse(400, body), &got) || got.Fields == nil || len(*got.Fields) != 1 ||
		(*got.Fields)[0].Field != "compression.level" {
		t.Fatalf("fields lost or aliased: %s", body)
	}
}

// TestFromResponseForeign: bodies that are not ours still give a useful,
// matchable error.
func TestFromResponseForeign(t *testing.T) {
	tests := []struct {
		name   string
		status int
		body   string
		want   *api.Error
		msg    string
	}{
		{"success", 200, `{"code":"not_found","message":"x"}`, nil, ""},
		{"created", 201, ``, nil, ""},
		{"gin 404", 404, "404 page not found", api.ErrNotFound, "HTTP 404: 404 page not found"},
		{"empty 401", 401, "", api.ErrUnauthorized, "HTTP 401: Unauthorized"},
		{"403", 403, "forbidden", api.ErrUnauthorized, "HTTP 403: forbidden"},
		{"gin 405", 405, "405 method not allowed", api.ErrInvalidRequest, "HTTP 405: 405 method not allowed"},
		{"413", 413, "too large", api.ErrInvalidRequest, "HTTP 413: too large"},
		{"proxy 502", 502, "<html>bad gateway</html>", api.ErrInternal, "HTTP 502: <html>bad gateway</html>"},
		{"503 no body", 503, "", api.ErrHostUnavailable, "HTTP 503: Service Unavailable"},
		{"unknown code", 409, `{"code":"nope","message":"m"}`, api.ErrConflict, `HTTP 409: {"code":"nope","message":"m"}`},
		{"code kept over status", 500, `{"code":"no_capacity","message":"full"}`, api.ErrNoCapacity, "full"},
		{"no message", 404, `{"code":"not_found"}`, api.ErrNotFound, "not_found"},
		{"wrong type", 400, `{"code":7}`, api.ErrInvalidRequest, `HTTP 400: {"code":7}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := api.FromResponse(tt.status, []byte(tt.body))
			if tt.want == nil {
				if err != nil {
					t.Fatalf("got %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v (%T), want code %s", err, err, tt.want.Code)
			}
			if err.Error() != tt.msg {
				t.Errorf("message %q, want %q", err.Error(), tt.msg)
			}
		})
	}
	long := strings.Repeat("x", 10000)
	if msg := api.FromResponse(500, []byte(long)).Error(); len(msg) > 600 {
		t.Errorf("long foreign body kept whole: %d bytes", len(msg))
	}
}

func TestToErrorForeign(t *testing.T) {
	for _, err := range []error{nil, errors.New("disk on fire"), io.ErrUnexpectedEOF, (*api.Error)(nil)} {
		got := api.ToError(err)
		if got.Code != api.ErrorCodeInternal || got.Status() != http.StatusInternalServerError || got.Message == "" {
			t.Errorf("ToError(%v) = %+v, want internal with a message", err, got)
		}
	}
}

// FuzzFromResponse: whatever a peer answers, FromResponse neither panics nor
// invents a code, and its message is valid UTF-8 of bounded size.
func FuzzFromResponse(f *testing.F) {
	f.Add(404, []byte(`{"code":"not_found","message":"instance i-1 not found"}`))
	f.Add(400, []byte(`{"code":"invalid_snapshot_compression","message":"m","fields":[{"field":"compression.level","message":"x"}]}`))
	f.Add(503, []byte("\xff\xfe"))
	f.Add(200, []byte(nil))
	f.Add(999, []byte(`{"code":null}`))
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		err := api.FromResponse(status, body)
		if status < 400 {
			if err != nil {
				t.Fatalf("status %d gave %v", status, err)
			}
			return
		}
		var e *api.Error
		if !errors.As(err, &e) || !e.Code.Valid() {
			t.Fatalf("status %d gave %v (%T)", status, err, err)
		}
		if !errors.Is(err, api.Sentinel(e.Code)) {
			t.Fatalf("%v does not match its sentinel", err)
		}
		if json.Valid(body) {
			return // a decoded message is the peer's, kept as sent
		}
		if !utf8.ValidString(e.Message) || len(e.Message) > 600 {
			t.Fatalf("message invalid or too long: %d bytes", len(e.Message))
		}
	})
}
