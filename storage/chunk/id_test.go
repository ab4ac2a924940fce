package chunk

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestIDStringKeyParse(t *testing.T) {
	id := Sum([]byte("abc"))
	const want = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
	if id.String() != want {
		t.Fatalf("Sum(abc) = %s, want %s", id, want)
	}
	if got := id.Key(); got != "chunks/ba/"+want {
		t.Fatalf("Key = %q", got)
	}
	back, err := ParseID(want)
	if err != nil || back != id {
		t.Fatalf("ParseID(%s) = %s, %v", want, back, err)
	}
	b, err := json.Marshal(struct{ ID ID }{id})
	if err != nil || string(b) != `{"ID":"`+want+`"}` {
		t.Fatalf("json = %s, %v", b, err)
	}
	var v struct{ ID ID }
	if err := json.Unmarshal(b, &v); err != nil || v.ID != id {
		t.Fatalf("json round trip = %s, %v", v.ID, err)
	}
	if !(ID{}).IsZero() || id.IsZero() {
		t.Fatal("IsZero wrong")
	}
}

func TestParseIDRejects(t *testing.T) {
	good := strings.Repeat("0f", 32)
	for _, tc := range []struct{ name, in string }{
		{"empty", ""},
		{"short", good[:63]},
		{"long", good + "0"},
		{"upper case", strings.ToUpper(good)},
		{"non-hex", good[:63] + "g"},
		{"space", " " + good[1:]},
		{"key form", "chunks/0f/" + good},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if id, err := ParseID(tc.in); err == nil {
				t.Fatalf("ParseID(%q) = %s, want error", tc.in, id)
			}
			var id ID
			if err := json.Unmarshal([]byte(`"`+tc.in+`"`), &id); err == nil {
				t.Fatalf("json accepted %q", tc.in)
			}
		})
	}
}

func TestValidateSize(t *testing.T) {
	for _, tc := range []struct {
		n  int
		ok bool
	}{
		{0, false}, {-DefaultSize, false}, {MinSize / 2, false}, {MinSize, true},
		{MinSize + 4096, false}, {2 << 20, true}, {DefaultSize, true}, {3 << 20, false},
		{8 << 20, true}, {MaxSize, true}, {2 * MaxSize, false},
	} {
		if err := ValidateSize(tc.n); (err == nil) != tc.ok {
			t.Errorf("ValidateSize(%d) = %v, want ok=%v", tc.n, err, tc.ok)
		}
	}
}
