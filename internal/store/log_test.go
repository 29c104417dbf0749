package store

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/mirrord/mirrord/internal/logtest"
)

// Badger logs through the store's logger: each key once (the component
// main gave, and subsystem=badger), at debug, and not a line per write.
func TestBadgerLog(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})).With("component", "store")
	s, err := Open(t.TempDir(), Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	const writes = 200
	for i := range writes {
		if err := s.Put(fmt.Sprintf("test/%d", i), []byte("value")); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	badger := 0
	sc := bufio.NewScanner(&buf)
	for sc.Scan() {
		keys, err := logtest.JSONKeys(sc.Bytes())
		if err != nil && err != io.EOF {
			t.Fatalf("log line %s: %v", sc.Bytes(), err)
		}
		seen := map[string]bool{}
		for _, k := range keys {
			if seen[k] {
				t.Errorf("key %q twice in %s", k, sc.Bytes())
			}
			seen[k] = true
		}
		var line struct{ Level, Component, Subsystem string }
		json.Unmarshal(sc.Bytes(), &line)
		if line.Component != "store" {
			t.Errorf("line without component=store: %s", sc.Bytes())
		}
		if line.Subsystem == "badger" {
			badger++
			if line.Level != "DEBUG" {
				t.Errorf("badger's line at %s: %s", line.Level, sc.Bytes())
			}
		}
	}
	if badger == 0 || badger > 30 {
		t.Errorf("%d lines of badger for an open, %d writes and a close; want a few (its Info), none per write:\n%s",
			badger, writes, strings.TrimSpace(buf.String()))
	}
}
