package compression

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func ptr[T any](v T) *T { return &v }

func TestPolicyValidate(t *testing.T) {
	tests := []struct {
		name   string
		policy *Policy
		// want lists "field: substring" per expected problem, in order.
		want []string
	}{
		{"nil", nil, nil},
		{"empty", &Policy{}, nil},
		{"zstd-1", &Policy{Algorithm: "zstd", Level: ptr(1)}, nil},
		{"zstd-19", &Policy{Algorithm: "zstd", Level: ptr(19)}, nil},
		{"zstd-0", &Policy{Algorithm: "zstd", Level: ptr(0)},
			[]string{"compression.level: 0 is out of range for zstd (1-19)"}},
		{"zstd-20", &Policy{Algorithm: "zstd", Level: ptr(20)},
			[]string{"compression.level: 20 is out of range for zstd (1-19)"}},
		{"lz4-0", &Policy{Algorithm: "lz4", Level: ptr(0)}, nil},
		{"lz4-9", &Policy{Algorithm: "lz4", Level: ptr(9)}, nil},
		{"lz4-minus-1", &Policy{Algorithm: "lz4", Level: ptr(-1)},
			[]string{"compression.level: -1 is out of range for lz4 (0-9)"}},
		{"lz4-10", &Policy{Algorithm: "lz4", Level: ptr(10)},
			[]string{"compression.level: 10 is out of range for lz4 (0-9)"}},
		{"ZSTD-upper", &Policy{Algorithm: "ZSTD", Level: ptr(3)}, nil},
		{"Lz4-mixed", &Policy{Algorithm: "Lz4"}, nil},
		{"none", &Policy{Algorithm: "none"}, nil},
		{"none-0", &Policy{Algorithm: "none", Level: ptr(0)}, nil},
		{"none-3", &Policy{Algorithm: "none", Level: ptr(3)},
			[]string{"compression.level: 3 is not allowed for none"}},
		{"enabled-only", &Policy{Enabled: ptr(true)}, nil},
		{"disabled-only", &Policy{Enabled: ptr(false)}, nil},
		{"disabled-with-algorithm", &Policy{Enabled: ptr(false), Algorithm: "lz4", Level: ptr(2)}, nil},
		{"disabled-still-checked", &Policy{Enabled: ptr(false), Algorithm: "zstd", Level: ptr(0)},
			[]string{"compression.level: 0 is out of range for zstd (1-19)"}},
		{"unknown-algorithm", &Policy{Algorithm: "gzip"},
			[]string{`compression.algorithm: unknown algorithm "gzip" (want zstd, lz4 or none)`}},
		{"unknown-algorithm-with-level", &Policy{Algorithm: "brotli", Level: ptr(99)},
			[]string{`compression.algorithm: unknown algorithm "brotli"`}},
		{"level-without-algorithm", &Policy{Level: ptr(3)},
			[]string{"compression.level: 3 is set without compression.algorithm (levels: zstd 1-19, lz4 0-9)"}},
		{"level-without-algorithm-enabled", &Policy{Enabled: ptr(true), Level: ptr(3)},
			[]string{"compression.level: 3 is set without compression.algorithm"}},
		{"enabled-true-none", &Policy{Enabled: ptr(true), Algorithm: "None"},
			[]string{`compression.algorithm: "None" contradicts compression.enabled: true`}},
		{"several", &Policy{Enabled: ptr(true), Algorithm: "none", Level: ptr(7)},
			[]string{"compression.algorithm: ", "compression.level: 7 is not allowed for none"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.policy.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Validate() = %v, want *ValidationError", err)
			}
			if !errors.Is(err, ErrInvalidPolicy) {
				t.Error("ValidationError does not match ErrInvalidPolicy")
			}
			if len(ve.Problems) != len(tt.want) {
				t.Fatalf("problems %q, want %d: %q", ve.Problems, len(tt.want), tt.want)
			}
			for i, w := range tt.want {
				if got := ve.Problems[i].String(); !strings.HasPrefix(got, w) {
					t.Errorf("problem %d = %q, want prefix %q", i, got, w)
				}
			}
			for _, p := range ve.Problems {
				if !strings.Contains(err.Error(), p.String()) {
					t.Errorf("Error() %q misses %q", err, p)
				}
			}
		})
	}
}

func TestResolve(t *testing.T) {
	var (
		zstd7  = &Policy{Algorithm: "zstd", Level: ptr(7)}
		lz4    = &Policy{Algorithm: "LZ4"}
		lz4x9  = &Policy{Algorithm: "lz4", Level: ptr(9)}
		off    = &Policy{Enabled: ptr(false)}
		offLZ4 = &Policy{Enabled: ptr(false), Algorithm: "lz4"}
		on     = &Policy{Enabled: ptr(true)}
		onLZ4  = &Policy{Enabled: ptr(true), Algorithm: "lz4", Level: ptr(3)}
		none   = &Policy{Algorithm: "none"}
		empty  = &Policy{}
		noComp = Setting{None, 0}
	)
	tests := []struct {
		name                      string
		request, instance, server *Policy
		want                      Setting
	}{
		{"nothing set", nil, nil, nil, noComp},
		{"all empty", empty, empty, empty, noComp},
		{"server default only", nil, nil, zstd7, Setting{Zstd, 7}},
		{"instance over server", nil, lz4, zstd7, Setting{LZ4, 0}},
		{"request over instance and server", lz4x9, lz4, zstd7, Setting{LZ4, 9}},
		{"empty request defers", empty, lz4x9, zstd7, Setting{LZ4, 9}},
		{"empty request and instance defer", empty, empty, zstd7, Setting{Zstd, 7}},
		{"request disables over instance", off, lz4, zstd7, noComp},
		{"instance disables over server", nil, off, zstd7, noComp},
		{"server disables", nil, nil, off, noComp},
		{"request enables over instance disable", lz4x9, off, off, Setting{LZ4, 9}},
		{"request enables over server disable", on, nil, off, Setting{Zstd, 1}},
		{"disable wins over own algorithm", offLZ4, zstd7, nil, noComp},
		{"enabled true alone is zstd default", on, lz4, nil, Setting{Zstd, 1}},
		{"enabled true with algorithm", onLZ4, nil, nil, Setting{LZ4, 3}},
		{"algorithm without level gets default", nil, &Policy{Algorithm: "zstd"}, nil, Setting{Zstd, 1}},
		{"algorithm none", none, zstd7, nil, noComp},
		{"fields never merge across levels", &Policy{Algorithm: "zstd"}, zstd7, nil, Setting{Zstd, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Resolve(tt.request, tt.instance, tt.server)
			if err != nil {
				t.Fatalf("Resolve: %v", err)
			}
			if got != tt.want {
				t.Fatalf("Resolve = %s, want %s", got, tt.want)
			}
			c, err := got.Codec()
			if err != nil {
				t.Fatalf("Codec(): %v", err)
			}
			if c.Algorithm() != got.Algorithm || c.Level() != got.Level {
				t.Errorf("codec %s:%d for setting %s", c.Algorithm(), c.Level(), got)
			}
		})
	}
}

func TestResolveInvalid(t *testing.T) {
	bad := &Policy{Algorithm: "zstd", Level: ptr(20)}
	good := &Policy{Algorithm: "lz4"}
	tests := []struct {
		name                      string
		request, instance, server *Policy
		source                    string
	}{
		{"request", bad, good, good, SourceRequest},
		{"instance", good, bad, nil, SourceInstance},
		{"instance even when request wins", good, bad, nil, SourceInstance},
		{"server default", nil, nil, bad, SourceServerDefault},
		{"first invalid reported", bad, bad, bad, SourceRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Resolve(tt.request, tt.instance, tt.server)
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Resolve error = %v, want *ValidationError", err)
			}
			if ve.Source != tt.source {
				t.Errorf("Source = %q, want %q", ve.Source, tt.source)
			}
			if !strings.Contains(err.Error(), "invalid "+tt.source+" compression policy: compression.level: 20 is out of range for zstd (1-19)") {
				t.Errorf("error %q", err)
			}
		})
	}
	// Resolve must not leave Source on a caller's later Validate.
	if err := bad.Validate(); err.(*ValidationError).Source != "" {
		t.Error("Validate returned a Source")
	}
}

func TestPolicyJSON(t *testing.T) {
	var p Policy
	if err := json.Unmarshal([]byte(`{"enabled":false,"algorithm":"ZSTD","level":3}`), &p); err != nil {
		t.Fatal(err)
	}
	if p.Enabled == nil || *p.Enabled || p.Algorithm != "ZSTD" || p.Level == nil || *p.Level != 3 {
		t.Fatalf("decoded %+v", p)
	}
	b, _ := json.Marshal(Policy{})
	if string(b) != "{}" {
		t.Errorf("empty policy marshals to %s", b)
	}
}

func TestSettingString(t *testing.T) {
	for s, want := range map[Setting]string{{Zstd, 3}: "zstd:3", {LZ4, 0}: "lz4:0", {None, 0}: "none"} {
		if got := s.String(); got != want {
			t.Errorf("%#v.String() = %q, want %q", s, got, want)
		}
	}
	if _, err := (Setting{}).Codec(); err == nil {
		t.Error("zero Setting has a codec")
	}
}
