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
)

// jsonKeys returns the keys of one JSON log line, in order, nested
// objects' as "group.key": a key twice in a line is a bug.
func jsonKeys(line []byte) ([]string, error) {
	dec := json.NewDecoder(bytes.NewReader(line))
	var keys []string
	var walk func(prefix string) error
	walk = func(prefix string) error {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		switch tok {
		case json.Delim('{'):
			for dec.More() {
				k, err := dec.Token()
				if err != nil {
					return err
				}
				keys = append(keys, prefix+k.(string))
				if err := walk(prefix + k.(string) + "."); err != nil {
					return err
				}
			}
			_, err = dec.Token() // }
			return err
		case json.Delim('['):
			for dec.More() {
				if err := walk(prefix); err != nil {
					return err
				}
			}
			_, err = dec.Token() // ]
			return err
		}
		return nil
	}
	return keys, walk("")
}

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
		keys, err := jsonKeys(sc.Bytes())
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
