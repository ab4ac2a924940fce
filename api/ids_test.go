package api_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/hangar-vm/hangar/api"
)

func TestValidateID(t *testing.T) {
	tests := []struct {
		id string
		ok bool
	}{
		{"i-6f1c2a9b", true},
		{"a", true},
		{"0", true},
		{strings.Repeat("a", 63), true},
		{strings.Repeat("a", 64), false},
		{"", false},
		{"-a", false},
		{"A", false},
		{"a_b", false},
		{"a.b", false},
		{"..", false},
		{"../etc/passwd", false},
		{"a/b", false},
		{"a%2Fb", false},
		{"a\x00", false},
		{"a\n", false},
		{"é", false},
	}
	for _, tt := range tests {
		err := api.ValidateID("instance", tt.id)
		if (err == nil) != tt.ok {
			t.Errorf("ValidateID(%q) = %v, want ok=%v", tt.id, err, tt.ok)
		}
		if err != nil && !errors.Is(err, api.ErrInvalidRequest) {
			t.Errorf("ValidateID(%q) error %v does not match ErrInvalidRequest", tt.id, err)
		}
		if nerr := api.ValidateName("name", tt.id); (nerr == nil) != tt.ok {
			t.Errorf("ValidateName(%q) = %v, want ok=%v", tt.id, nerr, tt.ok)
		}
	}
	if err := api.ValidateID("instance", strings.Repeat("x/", 5000)); len(err.Error()) > 300 {
		t.Errorf("hostile id copied whole into the message (%d bytes)", len(err.Error()))
	}
}
