package devenv

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/hangar-vm/hangar/internal/config"
)

// tokensFile holds the cluster's tokens in the dev directory.
const tokensFile = "tokens.json"

// Tokens are the dev cluster's bearer tokens.
type Tokens struct {
	User    config.Secret `json:"-"`
	Cluster config.Secret `json:"-"`
}

// tokensJSON is the file's form; config.Secret marshals redacted, so the
// file is written through plain strings.
type tokensJSON struct {
	User    string `json:"user_token"`
	Cluster string `json:"cluster_token"`
}

// loadTokens reads the tokens of dir, generating and saving them on the
// first start. A file that exists but cannot be used is an error, not a
// reason to silently change the tokens an operator already pasted.
func loadTokens(dir string) (Tokens, error) {
	path := filepath.Join(dir, tokensFile)
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		var tj tokensJSON
		if err := json.Unmarshal(b, &tj); err != nil {
			return Tokens{}, fmt.Errorf("%s: %w (delete it to generate new tokens)", path, err)
		}
		if len(tj.User) < minTokenLen || len(tj.Cluster) < minTokenLen || tj.User == tj.Cluster {
			return Tokens{}, fmt.Errorf("%s: tokens missing, shorter than %d characters or equal (delete it to generate new tokens)", path, minTokenLen)
		}
		return Tokens{User: config.Secret(tj.User), Cluster: config.Secret(tj.Cluster)}, nil
	case !errors.Is(err, fs.ErrNotExist):
		return Tokens{}, fmt.Errorf("read tokens: %w", err)
	}
	tj := tokensJSON{User: "hgu-" + randomHex(16), Cluster: "hgc-" + randomHex(16)}
	b, err = json.MarshalIndent(tj, "", "  ")
	if err != nil {
		return Tokens{}, err
	}
	tmp, err := os.CreateTemp(dir, ".tokens-*")
	if err != nil {
		return Tokens{}, fmt.Errorf("write tokens: %w", err)
	}
	defer os.Remove(tmp.Name()) // a no-op after the rename
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return Tokens{}, fmt.Errorf("write tokens: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return Tokens{}, fmt.Errorf("write tokens: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return Tokens{}, fmt.Errorf("write tokens: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return Tokens{}, fmt.Errorf("write tokens: %w", err)
	}
	return Tokens{User: config.Secret(tj.User), Cluster: config.Secret(tj.Cluster)}, nil
}

// minTokenLen is the servers' and hosts' minimum.
const minTokenLen = 16

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b) // never fails (crypto/rand panics rather than return short)
	return hex.EncodeToString(b)
}
